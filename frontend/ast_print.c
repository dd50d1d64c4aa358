/* ast_print.c — --emit=ast: prints the AST as S-expressions, one statement per
 * line (blocks indented), each followed by `# line:col`. Relies on ast.h. */
#include <inttypes.h>
#include <stdio.h>

#include "frontend/ast.h"

const char *ast_binop_name(BinOp op) {
  switch (op) {
    case BIN_ADD: return "+";
    case BIN_SUB: return "-";
    case BIN_MUL: return "*";
    case BIN_DIV: return "/";
    case BIN_MATMUL: return "@";
    case BIN_POW: return "**";
  }
  return "?";
}

static void print_expr(const Expr *e, FILE *out) {
  if (!e) {
    fputs("_", out);
    return;
  }
  switch (e->kind) {
    case EX_INT: fprintf(out, "%" PRId64, e->ival); break;
    case EX_FLOAT: fprintf(out, "%.9g", e->fval); break;
    case EX_NAME: fputs(e->name, out); break;
    case EX_CALL:
      fprintf(out, "(call %s", e->name);
      for (int i = 0; i < e->nargs; i++) {
        fputc(' ', out);
        if (e->args[i].name) fprintf(out, "%s=", e->args[i].name);
        print_expr(e->args[i].value, out);
      }
      fputc(')', out);
      break;
    case EX_LIST:
      fputs("(list", out);
      for (int i = 0; i < e->nitems; i++) {
        fputc(' ', out);
        print_expr(e->items[i], out);
      }
      fputc(')', out);
      break;
    case EX_NEG:
      fputs("(neg ", out);
      print_expr(e->lhs, out);
      fputc(')', out);
      break;
    case EX_BINARY:
      fprintf(out, "(%s ", ast_binop_name(e->op));
      print_expr(e->lhs, out);
      fputc(' ', out);
      print_expr(e->rhs, out);
      fputc(')', out);
      break;
    case EX_INDEX:
      fputs("(index ", out);
      print_expr(e->lhs, out);
      for (int i = 0; i < e->nslices; i++) {
        const SliceItem *s = &e->slices[i];
        fputc(' ', out);
        if (s->is_range) {
          fputs("(range ", out);
          print_expr(s->start, out);
          fputc(' ', out);
          print_expr(s->stop, out);
          fputc(' ', out);
          print_expr(s->step, out);
          fputc(')', out);
        } else {
          print_expr(s->start, out);
        }
      }
      fputc(')', out);
      break;
    case EX_DOT_T:
      fputs("(T ", out);
      print_expr(e->lhs, out);
      fputc(')', out);
      break;
    case EX_SHAPE:
      fputs("(shape ", out);
      print_expr(e->lhs, out);
      fputc(' ', out);
      print_expr(e->rhs, out);
      fputc(')', out);
      break;
  }
}

static void print_block(const Block *b, int indent, FILE *out);

static void print_stmt(const Stmt *s, int indent, FILE *out) {
  static const char *decl_names[] = {"input", "label", "param", "state"};
  fprintf(out, "%*s", indent * 2, "");
  switch (s->kind) {
    case ST_MODEL: fprintf(out, "(model %s)", s->name); break;
    case ST_CONST:
      fprintf(out, "(const %s ", s->name);
      print_expr(s->value, out);
      fputc(')', out);
      break;
    case ST_DECL:
      fprintf(out, "(%s %s (%s", decl_names[s->decl], s->name, dtype_name(s->type.dtype));
      for (int i = 0; i < s->type.ndims; i++) {
        fputc(' ', out);
        print_expr(s->type.dims[i], out);
      }
      fputc(')', out);
      if (s->value) {
        fputc(' ', out);
        print_expr(s->value, out);
      }
      if (s->frozen) fputs(" frozen", out);
      fputc(')', out);
      break;
    case ST_ASSIGN:
      fprintf(out, "(= %s ", s->name);
      print_expr(s->value, out);
      fputc(')', out);
      break;
    case ST_OUTPUT:
      fputs("(output", out);
      for (int i = 0; i < s->nnames; i++) fprintf(out, " %s", s->names[i].name);
      fputc(')', out);
      break;
    case ST_METRIC:
      fprintf(out, "(metric %s ", s->name);
      print_expr(s->value, out);
      fputc(')', out);
      break;
    case ST_TRAIN:
      fprintf(out, "(train %s ", s->name);
      print_expr(s->value, out);
      fputc(')', out);
      break;
    case ST_FN:
      fprintf(out, "(fn %s (", s->name);
      for (int i = 0; i < s->nnames; i++) fprintf(out, i ? " %s" : "%s", s->names[i].name);
      fprintf(out, ")  # %d:%d\n", s->loc.line, s->loc.col);
      print_block(&s->body, indent + 1, out);
      fprintf(out, "%*s)\n", indent * 2, "");
      return;
    case ST_FOR:
      fprintf(out, "(for %s ", s->name);
      print_expr(s->value, out);
      fputc(' ', out);
      print_expr(s->value2, out);
      fprintf(out, "  # %d:%d\n", s->loc.line, s->loc.col);
      print_block(&s->body, indent + 1, out);
      fprintf(out, "%*s)\n", indent * 2, "");
      return;
    case ST_RETURN:
      fputs("(return ", out);
      print_expr(s->value, out);
      fputc(')', out);
      break;
  }
  fprintf(out, "  # %d:%d\n", s->loc.line, s->loc.col);
}

static void print_block(const Block *b, int indent, FILE *out) {
  for (int i = 0; i < b->n; i++) print_stmt(b->items[i], indent, out);
}

void fe_print_ast(const Ast *ast, FILE *out) {
  if (!ast) return;
  fprintf(out, "# ast of %s\n", ast->file);
  print_block(&ast->top, 0, out);
}
