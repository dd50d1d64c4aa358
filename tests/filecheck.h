/* filecheck.h — a small in-tree FileCheck: checks a text (a pass's printed
 * output) against the `; CHECK:` lines of a test file. */
#ifndef TESTS_FILECHECK_H
#define TESTS_FILECHECK_H

#include <stdio.h>

/* Directives, read from every line of `checks` that starts with ';'
 * (after spaces), in order; the pattern is the rest of the line with
 * surrounding spaces trimmed and is matched as a substring of one line:
 *   ; CHECK: P       the first line at or after the current position that
 *                    contains P; the position moves past it
 *   ; CHECK-NEXT: P  the line right after the previous match contains P
 *   ; CHECK-NOT: P   no line between the previous match and the next one
 *                    (or the end of the output) contains P
 * Returns the number of failed directives (0: the output passes), each
 * reported to `err` as `FILE:LINE: error: ...` naming the pattern and where
 * the search started. A file without any directive is an error. */
int filecheck(const char *checks, const char *checks_name, const char *output, FILE *err);

#endif
