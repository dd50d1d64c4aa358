/* test_lexer.c — cmocka tests of the .dl lexer: keywords, identifiers,
 * numbers (`.5`, `1e-3`, `0..3`), punctuation, newlines and comments,
 * source locations, and errors for bad characters and malformed numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "frontend/ast.h"

typedef struct {
  Arena *a;
  Diag d;
  Token *t;
  int n;
} Lexed;

static Lexed lex(const char *src) {
  Lexed L;
  L.a = arena_new();
  diag_init(&L.d, NULL);
  L.t = lex_tokenize(L.a, "t.dl", src, &L.d, &L.n);
  return L;
}
static void done(Lexed *L) {
  diag_free(&L->d);
  arena_free(L->a);
}

static void test_keywords_idents(void **state) {
  (void)state;
  Lexed L = lex("param W1 : f32[B, 2*C] = zeros frozen");
  TokKind want[] = {TK_PARAM, TK_IDENT, TK_COLON, TK_IDENT, TK_LBRACKET, TK_IDENT, TK_COMMA, TK_INT, TK_STAR,
                    TK_IDENT, TK_RBRACKET, TK_ASSIGN, TK_IDENT, TK_FROZEN, TK_NEWLINE, TK_EOF};
  assert_int_equal(L.n, (int)(sizeof want / sizeof want[0]));
  for (int i = 0; i < L.n; i++) assert_int_equal(L.t[i].kind, want[i]);
  assert_string_equal(L.t[1].text, "W1");
  assert_int_equal(L.t[1].loc.line, 1);
  assert_int_equal(L.t[1].loc.col, 7);
  assert_int_equal(L.d.n_errors, 0);
  done(&L);
}

static void test_numbers(void **state) {
  (void)state;
  Lexed L = lex("128 0.1 1e-3 .5 2E+2 0..3");
  assert_int_equal(L.t[0].kind, TK_INT);
  assert_int_equal(L.t[0].ival, 128);
  assert_int_equal(L.t[1].kind, TK_FLOAT);
  assert_true(L.t[1].fval == 0.1);
  assert_int_equal(L.t[2].kind, TK_FLOAT);
  assert_true(L.t[2].fval == 1e-3);
  assert_int_equal(L.t[3].kind, TK_FLOAT);
  assert_true(L.t[3].fval == 0.5);
  assert_int_equal(L.t[4].kind, TK_FLOAT);
  assert_true(L.t[4].fval == 200.0);
  assert_int_equal(L.t[5].kind, TK_INT);
  assert_int_equal(L.t[6].kind, TK_DOTDOT);
  assert_int_equal(L.t[7].kind, TK_INT);
  assert_int_equal(L.t[7].ival, 3);
  assert_int_equal(L.d.n_errors, 0);
  done(&L);
}

static void test_operators_comments_lines(void **state) {
  (void)state;
  Lexed L = lex("# header\ny = a ** -b @ c.T # trailing\n\nz = x.shape[0]");
  TokKind want[] = {TK_NEWLINE, TK_IDENT, TK_ASSIGN, TK_IDENT, TK_STARSTAR, TK_MINUS, TK_IDENT, TK_AT, TK_IDENT,
                    TK_DOT,     TK_IDENT, TK_NEWLINE, TK_NEWLINE, TK_IDENT, TK_ASSIGN, TK_IDENT, TK_DOT,
                    TK_IDENT,   TK_LBRACKET, TK_INT, TK_RBRACKET, TK_NEWLINE, TK_EOF};
  assert_int_equal(L.n, (int)(sizeof want / sizeof want[0]));
  for (int i = 0; i < L.n; i++) assert_int_equal(L.t[i].kind, want[i]);
  assert_int_equal(L.t[1].loc.line, 2);
  assert_int_equal(L.t[13].loc.line, 4);
  assert_int_equal(L.t[13].loc.col, 1);
  done(&L);
}

static void test_errors(void **state) {
  (void)state;
  Lexed L = lex("a = $ + 1e\nb = 3 ? \x01 \xc3\xa9");
  assert_int_equal(L.d.n_errors, 5);
  assert_string_equal(L.d.first, "t.dl:1:5: error: unexpected character '$'");
  done(&L);
  L = lex("x = 12abc");
  assert_string_equal(L.d.first, "t.dl:1:5: error: malformed number '12abc'");
  done(&L);
  L = lex("x = 99999999999999999999999");
  assert_string_equal(L.d.first, "t.dl:1:5: error: integer '99999999999999999999999' is too large");
  done(&L);
}

static void test_empty_and_crlf(void **state) {
  (void)state;
  Lexed L = lex("");
  assert_int_equal(L.n, 2);
  assert_int_equal(L.t[1].kind, TK_EOF);
  done(&L);
  L = lex("a = 1\r\nb = 2\r\n");
  assert_int_equal(L.d.n_errors, 0);
  assert_int_equal(L.t[4].kind, TK_IDENT);
  assert_int_equal(L.t[4].loc.line, 2);
  done(&L);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keywords_idents),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_operators_comments_lines),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_empty_and_crlf),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
