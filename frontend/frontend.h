/* frontend.h — the public API of the frontend: parse a .dl model (SPEC §1–§4)
 * into an AST and build the forward IR graph for one mode. Everything returned
 * is allocated from the caller's arena and lives as long as it does. */
#ifndef FRONTEND_FRONTEND_H
#define FRONTEND_FRONTEND_H

#include <stdio.h>

#include "ir/arena.h"
#include "ir/diag.h"
#include "ir/ir.h"

typedef struct Ast Ast;
typedef struct { const char *name; const char *value; } ConstDef; /* -D NAME=VALUE, raw text */

/* NULL if there were syntax errors (all of them are reported to d). `text` must
 * outlive the AST (names point into the arena, not into text). */
Ast *fe_parse(Arena *a, const char *file, const char *text, Diag *d);
/* --emit=ast: one statement per line as an S-expression, with line:col. */
void fe_print_ast(const Ast *ast, FILE *out);
/* Builds the forward graph for one mode (MODE_TRAIN: dropout active, batchnorm
 * uses batch statistics and records running-stat updates with ir_add_update;
 * MODE_EVAL/MODE_INFER: dropout is the identity, batchnorm uses the state). In
 * MODE_INFER labels, loss and metrics are omitted (anything depending on a label
 * is skipped without error). Sets g->loss/loss_name and g->opt from
 * `train NAME with OPT` (MODE_TRAIN/EVAL), outputs, metrics. Returns NULL after
 * reporting errors. */
Graph *fe_build_graph(Arena *a, const Ast *ast, GraphMode mode, const ConstDef *defs, int ndefs, Diag *d);
/* Model name: `model NAME` or the file's stem (sanitised to an identifier). */
const char *fe_model_name(const Ast *ast);
/* Convenience: read file, parse, build. The text is kept alive in the arena and
 * registered with diag_add_source. */
Graph *fe_compile_file(Arena *a, const char *path, GraphMode mode, const ConstDef *defs, int ndefs, Diag *d);

#endif
