/* ir_parse.h — parsers of the textual IR: the graph form printed by
 * ir_print (--emit=ir, --emit=grad) and the kernel program printed by
 * kir_print (--emit=opt). A `.dlir` file holds any number of graphs and at
 * most one kernel program; `print(parse(print(x))) == print(x)` byte for
 * byte. Errors go to a Diag as `FILE:LINE:COL: error: ...` with a caret
 * (the text is registered with diag_add_source); parsing never crashes on
 * malformed text. Also the small printing helpers both printers share, so
 * that the printed form and the parser agree on quoting and inits. */
#ifndef IR_IR_PARSE_H
#define IR_IR_PARSE_H

#include <stdio.h>

#include "ir/ir.h"
#include "ir/kernel.h"

/* What a .dlir file holds. Everything is allocated from the arena. */
typedef struct {
  Graph **graphs;
  int n_graphs;
  Program *prog; /* NULL when the file has no `program` block */
} IrModule;

/* Parses the whole text (named `file` in diagnostics, registered with
 * diag_add_source by this call). Graph node ids may be sparse in the text:
 * they are renumbered densely (a printed graph keeps its ids). dtypes and
 * shapes are re-derived with ir_infer and checked against the printed types.
 * Returns false after reporting errors to d. */
bool ir_parse_module(Arena *a, const char *file, const char *text, IrModule *out, Diag *d);
/* True if `path` ends in ".dlir". */
bool ir_is_dlir_path(const char *path);

/* ir_dot.c: Graphviz of g (--emit=dot): forward, backward and update nodes
 * in three fill colours, leaves as their own shapes, edges labelled with
 * shapes; with a program, the kernels of entry e that list their member
 * nodes (Kernel.members) as clusters around them. */
void ir_dot(const Graph *g, const Program *p, EntryKind e, FILE *out);

/* ---- shared by the printers (ir_print.c, kernel.c) ---- */
/* Prints s bare when it is a plain word ([A-Za-z_.@%/-][A-Za-z0-9_.@%/-]*,
 * not "%DIGIT..."), else double-quoted with \" and \\ escapes. */
void ir_print_word(FILE *out, const char *s);
/* "uniform(-0.1, 0.1)", "zeros", "constant(2)": the init and its arguments. */
void ir_print_init(FILE *out, const DlrtInit *in);
/* "  # FILE:LINE:COL" (and a leading name: "  # NAME FILE:LINE:COL");
 * nothing when both are absent. */
void ir_print_loc(FILE *out, SrcLoc l, const char *name);
const char *ir_init_name(int kind);
const char *ir_phase_name(Phase p);
const char *ir_mode_name(GraphMode m);
/* kernel.c: printed names, and the dtype a value expression has unless its
 * printed form says otherwise (with a `:i32`/`:f32` suffix). */
const char *kir_vx_name(VxOp op);
const char *kir_entry_name(int e);
const char *kir_red_name(RedKind r);
DType kir_vx_natural_dtype(const Program *p, const VExpr *e);

/* ---- internal: the line cursor (ir_parse_cursor.c) of both parsers ---- */
typedef struct {
  Arena *a;
  Diag *d;
  const char *file;
  const char *p;          /* current position */
  const char *line_start; /* start of the current line */
  int line;
  int depth;              /* expression nesting (bounded) */
  bool failed;
} IrpCur;

SrcLoc irp_loc(const IrpCur *c);
bool irp_error(IrpCur *c, SrcLoc at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void irp_ws(IrpCur *c);                        /* spaces and tabs */
void irp_skip_blank(IrpCur *c);                /* blank lines and whole-line comments (# or //) */
bool irp_at_eol(IrpCur *c);                    /* after spaces: end of line or of text */
bool irp_eol(IrpCur *c);                       /* expects the end of the line and moves past it */
bool irp_peek(IrpCur *c, char ch);             /* after spaces */
bool irp_accept(IrpCur *c, const char *s);     /* after spaces: consumes s if present */
bool irp_expect(IrpCur *c, const char *s);
bool irp_is_word_start(IrpCur *c);             /* after spaces: a bare word or a quoted string */
bool irp_word(IrpCur *c, const char **out);    /* bare word or quoted string */
bool irp_keyword(IrpCur *c, const char *kw);   /* a bare word equal to kw (consumed) */
bool irp_int(IrpCur *c, int64_t *out);
bool irp_u64(IrpCur *c, uint64_t *out);
bool irp_float(IrpCur *c, float *out);
bool irp_type(IrpCur *c, DType *dt, Shape *sh); /* f32[2,3] */
bool irp_init(IrpCur *c, DlrtInit *out);        /* zeros, uniform(a, b), ... */
/* "# [NAME] [FILE:LINE:COL]" up to the end of the line, if present. */
bool irp_loc_comment(IrpCur *c, const char **name, SrcLoc *loc);

/* kir_parse.c: one `program NAME { ... }` block at c (after the keyword). */
Program *kir_parse_program(IrpCur *c);

#endif
