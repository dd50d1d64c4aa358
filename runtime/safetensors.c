/* safetensors.c — reading and (atomically) writing safetensors files
 * (SPEC §7): a robust JSON header parser with offset/size checks, the
 * DlrtTensorSet container and its helpers. Host byte order must be little
 * endian (checked at compile time where the compiler tells). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/dlrt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dlrt safetensors I/O assumes a little-endian host"
#endif

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

const char *dlrt_dtype_name(int32_t dtype) {
  switch (dtype) {
  case DLRT_F32: return "F32";
  case DLRT_I32: return "I32";
  default: return NULL;
  }
}

size_t dlrt_dtype_size(int32_t dtype) {
  return (dtype == DLRT_F32 || dtype == DLRT_I32) ? 4 : 0;
}

/* ---- tensor set -------------------------------------------------------- */

DlrtTensor *dlrt_st_add(DlrtTensorSet *set, const char *name, int32_t dtype, int rank,
                        const int64_t *shape, const void *data) {
  if (!set || !name || rank < 0 || rank > DLRT_MAX_RANK || dlrt_dtype_size(dtype) == 0)
    return NULL;
  if (rank > 0 && !shape) return NULL;
  int64_t numel = 1;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0) return NULL;
    if (shape[i] != 0 && numel > INT64_MAX / 4 / shape[i]) return NULL;
    numel *= shape[i];
  }
  size_t nbytes = (size_t)numel * dlrt_dtype_size(dtype);
  if (set->n == set->cap) {
    int nc = set->cap ? set->cap * 2 : 8;
    DlrtTensor *t = realloc(set->t, (size_t)nc * sizeof *t);
    if (!t) return NULL;
    set->t = t;
    set->cap = nc;
  }
  DlrtTensor *t = &set->t[set->n];
  memset(t, 0, sizeof *t);
  t->name = xstrdup(name);
  t->data = dlrt_alloc(nbytes);
  if (!t->name || !t->data) {
    free(t->name);
    dlrt_free(t->data);
    return NULL;
  }
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank; i++) t->shape[i] = shape[i];
  t->nbytes = nbytes;
  if (data && nbytes) memcpy(t->data, data, nbytes);
  set->n++;
  return t;
}

const DlrtTensor *dlrt_st_find(const DlrtTensorSet *set, const char *name) {
  if (!set || !name) return NULL;
  for (int i = 0; i < set->n; i++)
    if (strcmp(set->t[i].name, name) == 0) return &set->t[i];
  return NULL;
}

void dlrt_st_free(DlrtTensorSet *set) {
  if (!set) return;
  for (int i = 0; i < set->n; i++) {
    free(set->t[i].name);
    dlrt_free(set->t[i].data);
  }
  free(set->t);
  memset(set, 0, sizeof *set);
}

/* ---- JSON header parser ------------------------------------------------ */

typedef struct {
  const char *s;
  size_t n, pos;
  const char *path;
  char *err;
  size_t errlen;
} Parser;

static int perr(Parser *p, const char *what) {
  seterr(p->err, p->errlen, "%s: bad safetensors header: %s at byte %zu of the JSON header",
         p->path, what, p->pos);
  return -1;
}

static void skip_ws(Parser *p) {
  while (p->pos < p->n) {
    char c = p->s[p->pos];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
    else break;
  }
}

static int expect(Parser *p, char c) {
  skip_ws(p);
  if (p->pos >= p->n || p->s[p->pos] != c) {
    char msg[32];
    snprintf(msg, sizeof msg, "expected '%c'", c);
    return perr(p, msg);
  }
  p->pos++;
  return 0;
}

/* Peeks the next non-space char, 0 at end. */
static char peek(Parser *p) {
  skip_ws(p);
  return p->pos < p->n ? p->s[p->pos] : 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_hex4(Parser *p, unsigned *out) {
  if (p->n - p->pos < 4) return perr(p, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p->s[p->pos + (size_t)i]);
    if (h < 0) return perr(p, "bad \\u escape");
    v = v * 16 + (unsigned)h;
  }
  p->pos += 4;
  *out = v;
  return 0;
}

/* Parses a JSON string; *out is malloc'ed (NUL-terminated) unless out is NULL. */
static int parse_string(Parser *p, char **out) {
  if (expect(p, '"')) return -1;
  size_t cap = 16, len = 0;
  char *buf = out ? malloc(cap) : NULL;
  if (out && !buf) return perr(p, "out of memory");
  for (;;) {
    if (p->pos >= p->n) {
      free(buf);
      return perr(p, "unterminated string");
    }
    unsigned char c = (unsigned char)p->s[p->pos++];
    unsigned cp;
    char enc[4];
    int elen = 0;
    if (c == '"') break;
    if (c < 0x20) {
      free(buf);
      return perr(p, "control character in string");
    }
    if (c != '\\') {
      enc[0] = (char)c;
      elen = 1;
    } else {
      if (p->pos >= p->n) {
        free(buf);
        return perr(p, "unterminated string");
      }
      char e = p->s[p->pos++];
      switch (e) {
      case '"': enc[0] = '"'; elen = 1; break;
      case '\\': enc[0] = '\\'; elen = 1; break;
      case '/': enc[0] = '/'; elen = 1; break;
      case 'b': enc[0] = '\b'; elen = 1; break;
      case 'f': enc[0] = '\f'; elen = 1; break;
      case 'n': enc[0] = '\n'; elen = 1; break;
      case 'r': enc[0] = '\r'; elen = 1; break;
      case 't': enc[0] = '\t'; elen = 1; break;
      case 'u':
        if (read_hex4(p, &cp)) {
          free(buf);
          return -1;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          unsigned lo;
          if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
            free(buf);
            return perr(p, "unpaired surrogate in \\u escape");
          }
          p->pos += 2;
          if (read_hex4(p, &lo)) {
            free(buf);
            return -1;
          }
          if (lo < 0xDC00 || lo > 0xDFFF) {
            free(buf);
            return perr(p, "unpaired surrogate in \\u escape");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          free(buf);
          return perr(p, "unpaired surrogate in \\u escape");
        }
        if (cp == 0) {
          free(buf);
          return perr(p, "NUL character in string");
        }
        if (cp < 0x80) {
          enc[0] = (char)cp;
          elen = 1;
        } else if (cp < 0x800) {
          enc[0] = (char)(0xC0 | (cp >> 6));
          enc[1] = (char)(0x80 | (cp & 0x3F));
          elen = 2;
        } else if (cp < 0x10000) {
          enc[0] = (char)(0xE0 | (cp >> 12));
          enc[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
          enc[2] = (char)(0x80 | (cp & 0x3F));
          elen = 3;
        } else {
          enc[0] = (char)(0xF0 | (cp >> 18));
          enc[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
          enc[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
          enc[3] = (char)(0x80 | (cp & 0x3F));
          elen = 4;
        }
        break;
      default:
        free(buf);
        return perr(p, "bad escape in string");
      }
    }
    if (buf) {
      if (len + (size_t)elen + 1 > cap) {
        cap = cap * 2 + (size_t)elen;
        char *nb = realloc(buf, cap);
        if (!nb) {
          free(buf);
          return perr(p, "out of memory");
        }
        buf = nb;
      }
      memcpy(buf + len, enc, (size_t)elen);
      len += (size_t)elen;
    }
  }
  if (buf) {
    buf[len] = 0;
    *out = buf;
  }
  return 0;
}

/* A non-negative JSON integer (no fraction/exponent), fits in int64. */
static int parse_uint(Parser *p, int64_t *out) {
  skip_ws(p);
  if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
    return perr(p, "expected a non-negative integer");
  int64_t v = 0;
  while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
    int d = p->s[p->pos] - '0';
    if (v > (INT64_MAX - d) / 10) return perr(p, "integer too large");
    v = v * 10 + d;
    p->pos++;
  }
  if (p->pos < p->n && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E'))
    return perr(p, "expected an integer");
  *out = v;
  return 0;
}

static int skip_value(Parser *p, int depth);

static int skip_number(Parser *p) {
  size_t start = p->pos;
  if (p->pos < p->n && p->s[p->pos] == '-') p->pos++;
  size_t digits = p->pos;
  while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  if (p->pos == digits) {
    p->pos = start;
    return perr(p, "unexpected character");
  }
  if (p->pos < p->n && p->s[p->pos] == '.') {
    p->pos++;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  }
  return 0;
}

static int skip_literal(Parser *p, const char *lit) {
  size_t l = strlen(lit);
  if (p->n - p->pos < l || memcmp(p->s + p->pos, lit, l) != 0)
    return perr(p, "unexpected character");
  p->pos += l;
  return 0;
}

static int skip_value(Parser *p, int depth) {
  if (depth > 64) return perr(p, "nesting too deep");
  char c = peek(p);
  switch (c) {
  case '"': return parse_string(p, NULL);
  case '{':
    p->pos++;
    if (peek(p) == '}') {
      p->pos++;
      return 0;
    }
    for (;;) {
      if (parse_string(p, NULL) || expect(p, ':') || skip_value(p, depth + 1)) return -1;
      c = peek(p);
      if (c == ',') { p->pos++; continue; }
      if (c == '}') { p->pos++; return 0; }
      return perr(p, "expected ',' or '}'");
    }
  case '[':
    p->pos++;
    if (peek(p) == ']') {
      p->pos++;
      return 0;
    }
    for (;;) {
      if (skip_value(p, depth + 1)) return -1;
      c = peek(p);
      if (c == ',') { p->pos++; continue; }
      if (c == ']') { p->pos++; return 0; }
      return perr(p, "expected ',' or ']'");
    }
  case 't': return skip_literal(p, "true");
  case 'f': return skip_literal(p, "false");
  case 'n': return skip_literal(p, "null");
  case 0: return perr(p, "unexpected end of header");
  default: return skip_number(p);
  }
}

typedef struct {
  char *name;
  int32_t dtype;
  int rank;
  int64_t shape[DLRT_MAX_RANK];
  int64_t begin, end;
} Entry;

/* Parses {"dtype": ..., "shape": [...], "data_offsets": [b, e]} (any order;
 * unknown keys are skipped). */
static int parse_entry(Parser *p, Entry *e) {
  int have_dtype = 0, have_shape = 0, have_off = 0;
  if (expect(p, '{')) return -1;
  if (peek(p) == '}') {
    p->pos++;
    goto check;
  }
  for (;;) {
    char *key = NULL;
    if (parse_string(p, &key)) return -1;
    if (expect(p, ':')) {
      free(key);
      return -1;
    }
    if (strcmp(key, "dtype") == 0) {
      char *dt = NULL;
      free(key);
      if (parse_string(p, &dt)) return -1;
      if (strcmp(dt, "F32") == 0) e->dtype = DLRT_F32;
      else if (strcmp(dt, "I32") == 0) e->dtype = DLRT_I32;
      else {
        seterr(p->err, p->errlen, "%s: tensor '%s' has unsupported dtype \"%s\" (only F32 and I32)",
               p->path, e->name, dt);
        free(dt);
        return -1;
      }
      free(dt);
      have_dtype = 1;
    } else if (strcmp(key, "shape") == 0) {
      free(key);
      if (expect(p, '[')) return -1;
      e->rank = 0;
      if (peek(p) == ']') {
        p->pos++;
      } else {
        for (;;) {
          int64_t d;
          if (e->rank >= DLRT_MAX_RANK) {
            seterr(p->err, p->errlen, "%s: tensor '%s' has rank > %d", p->path, e->name,
                   DLRT_MAX_RANK);
            return -1;
          }
          if (parse_uint(p, &d)) return -1;
          e->shape[e->rank++] = d;
          char c = peek(p);
          if (c == ',') { p->pos++; continue; }
          if (c == ']') { p->pos++; break; }
          return perr(p, "expected ',' or ']' in shape");
        }
      }
      have_shape = 1;
    } else if (strcmp(key, "data_offsets") == 0) {
      free(key);
      if (expect(p, '[') || parse_uint(p, &e->begin) || expect(p, ',') ||
          parse_uint(p, &e->end) || expect(p, ']'))
        return -1;
      have_off = 1;
    } else {
      free(key);
      if (skip_value(p, 1)) return -1;
    }
    char c = peek(p);
    if (c == ',') { p->pos++; continue; }
    if (c == '}') { p->pos++; break; }
    return perr(p, "expected ',' or '}'");
  }
check:
  if (!have_dtype || !have_shape || !have_off) {
    seterr(p->err, p->errlen, "%s: tensor '%s' lacks %s", p->path, e->name,
           !have_dtype ? "\"dtype\"" : !have_shape ? "\"shape\"" : "\"data_offsets\"");
    return -1;
  }
  return 0;
}

static int cmp_entry_begin(const void *a, const void *b) {
  const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static void free_entries(Entry *es, int n) {
  for (int i = 0; i < n; i++) free(es[i].name);
  free(es);
}

/* The longest JSON header accepted: the limit of the reference safetensors
 * implementation. The length is the file's first 8 bytes, so without a bound
 * a garbage length (/dev/urandom) would have us read and allocate forever. */
#define ST_MAX_HEADER 100000000u

/* Checks the header length against the bytes after it (`avail`; UINT64_MAX
 * when unknown, as for a pipe) and the bound above. */
static int check_hlen(uint64_t hlen, uint64_t avail, const char *path, char *err, size_t errlen) {
  if (hlen > avail) {
    seterr(err, errlen, "%s: truncated safetensors file (header length %llu but only %llu bytes follow)",
           path, (unsigned long long)hlen, (unsigned long long)avail);
    return -1;
  }
  if (hlen == 0) {
    seterr(err, errlen, "%s: bad safetensors header: the header length is 0", path);
    return -1;
  }
  if (hlen > ST_MAX_HEADER) {
    seterr(err, errlen, "%s: bad safetensors header: header length %llu exceeds the limit of %u bytes",
           path, (unsigned long long)hlen, ST_MAX_HEADER);
    return -1;
  }
  return 0;
}

/* Parses the JSON header into entries (names, dtypes, shapes, offsets), not
 * yet checked against the data; *out is freed by free_entries. */
static int parse_header(const char *s, size_t len, const char *path, Entry **out, int *nout, char *err,
                        size_t errlen) {
  Parser p = {s, len, 0, path, err, errlen};
  int n = 0, cap = 0;
  Entry *es = NULL;
  if (expect(&p, '{')) goto fail;
  if (peek(&p) == '}') {
    p.pos++;
  } else {
    for (;;) {
      char *name = NULL;
      if (parse_string(&p, &name)) goto fail;
      if (expect(&p, ':')) {
        free(name);
        goto fail;
      }
      if (strcmp(name, "__metadata__") == 0) {
        free(name);
        if (skip_value(&p, 1)) goto fail;
      } else {
        for (int i = 0; i < n; i++)
          if (strcmp(es[i].name, name) == 0) {
            seterr(err, errlen, "%s: duplicate tensor name '%s'", path, name);
            free(name);
            goto fail;
          }
        if (n == cap) {
          int nc = cap ? cap * 2 : 16;
          Entry *ne = realloc(es, (size_t)nc * sizeof *ne);
          if (!ne) {
            free(name);
            seterr(err, errlen, "%s: out of memory", path);
            goto fail;
          }
          es = ne;
          cap = nc;
        }
        memset(&es[n], 0, sizeof es[n]);
        es[n].name = name;
        n++;
        if (parse_entry(&p, &es[n - 1])) goto fail;
      }
      char c = peek(&p);
      if (c == ',') { p.pos++; continue; }
      if (c == '}') { p.pos++; break; }
      perr(&p, "expected ',' or '}'");
      goto fail;
    }
  }
  skip_ws(&p);
  while (p.pos < p.n && p.s[p.pos] == 0) p.pos++; /* tolerate NUL padding */
  if (p.pos != p.n) {
    perr(&p, "trailing characters after the JSON object");
    goto fail;
  }
  *out = es;
  *nout = n;
  return 0;
fail:
  free_entries(es, n);
  return -1;
}

/* Checks every entry's size and offsets against the data section (dsize
 * bytes at data) and copies the tensors into out (emptied on error). */
static int build_set(Entry *es, int n, const unsigned char *data, size_t dsize, const char *path,
                     DlrtTensorSet *out, char *err, size_t errlen) {
  for (int i = 0; i < n; i++) {
    Entry *e = &es[i];
    int64_t numel = 1;
    for (int k = 0; k < e->rank; k++) {
      if (e->shape[k] != 0 && numel > INT64_MAX / 4 / e->shape[k]) {
        seterr(err, errlen, "%s: tensor '%s' has an overflowing shape", path, e->name);
        return -1;
      }
      numel *= e->shape[k];
    }
    if (e->begin > e->end || (uint64_t)e->end > (uint64_t)dsize) {
      seterr(err, errlen,
             "%s: tensor '%s' data_offsets [%lld, %lld] out of range (data section is %zu bytes%s)",
             path, e->name, (long long)e->begin, (long long)e->end, dsize,
             (uint64_t)e->end > (uint64_t)dsize ? "; file truncated?" : "");
      return -1;
    }
    if (e->end - e->begin != numel * 4) {
      seterr(err, errlen, "%s: tensor '%s' has %lld data bytes but its shape needs %lld", path,
             e->name, (long long)(e->end - e->begin), (long long)(numel * 4));
      return -1;
    }
  }
  if (n > 1) {
    Entry **ord = malloc((size_t)n * sizeof *ord);
    if (!ord) {
      seterr(err, errlen, "%s: out of memory", path);
      return -1;
    }
    for (int i = 0; i < n; i++) ord[i] = &es[i];
    qsort(ord, (size_t)n, sizeof *ord, cmp_entry_begin);
    for (int i = 1; i < n; i++)
      if (ord[i]->begin < ord[i - 1]->end) {
        seterr(err, errlen, "%s: tensors '%s' and '%s' have overlapping data_offsets", path,
               ord[i - 1]->name, ord[i]->name);
        free(ord);
        return -1;
      }
    free(ord);
  }
  for (int i = 0; i < n; i++) {
    Entry *e = &es[i];
    if (!dlrt_st_add(out, e->name, e->dtype, e->rank, e->shape, data + e->begin)) {
      seterr(err, errlen, "%s: out of memory loading '%s'", path, e->name);
      dlrt_st_free(out);
      return -1;
    }
  }
  return 0;
}

int dlrt_st_parse(const void *bytes, size_t size, const char *path, DlrtTensorSet *out,
                  char *err, size_t errlen) {
  const unsigned char *b = bytes;
  memset(out, 0, sizeof *out);
  if (!path) path = "<memory>";
  if (size < 8) {
    seterr(err, errlen, "%s: truncated safetensors file (%zu bytes, need at least 8)", path, size);
    return -1;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
  Entry *es = NULL;
  int n = 0;
  if (check_hlen(hlen, size - 8, path, err, errlen) ||
      parse_header((const char *)b + 8, (size_t)hlen, path, &es, &n, err, errlen))
    return -1;
  int rc = build_set(es, n, b + 8 + hlen, size - 8 - (size_t)hlen, path, out, err, errlen);
  free_entries(es, n);
  return rc;
}

/* Reads up to `want` bytes into *buf (malloc'ed, never NULL); *got < want
 * at the end of the file. The buffer grows with what actually arrives, so a
 * stream shorter than its header claims costs no more than it delivered. */
static int read_upto(FILE *f, uint64_t want, unsigned char **buf, size_t *got, const char *path,
                     char *err, size_t errlen) {
  if (want > SIZE_MAX) want = SIZE_MAX;
  size_t cap = want < (1u << 20) ? (size_t)want : (1u << 20), len = 0;
  unsigned char *b = malloc(cap ? cap : 1);
  while (b && len < want) {
    if (len == cap) {
      size_t nc = cap > want / 2 ? (size_t)want : cap * 2;
      unsigned char *nb = realloc(b, nc);
      if (!nb) {
        free(b);
        b = NULL;
        break;
      }
      b = nb;
      cap = nc;
    }
    size_t r = fread(b + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  if (!b) {
    seterr(err, errlen, "%s: out of memory", path);
    return -1;
  }
  if (ferror(f)) {
    seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
    free(b);
    return -1;
  }
  *buf = b;
  *got = len;
  return 0;
}

/* Reads the 8-byte length, then exactly the header, then the data its
 * offsets need: never the whole stream first, which for /dev/zero has no
 * end. A regular file's size is checked before anything is allocated. */
int dlrt_st_read(const char *path, DlrtTensorSet *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) {
    seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  int sized = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
  uint64_t fsize = sized ? (uint64_t)st.st_size : UINT64_MAX;
  unsigned char *head = NULL, *data = NULL;
  Entry *es = NULL;
  int n = 0, rc = -1;
  size_t got = 0;
  if (read_upto(f, 8, &head, &got, path, err, errlen)) goto done;
  if (got < 8) {
    seterr(err, errlen, "%s: truncated safetensors file (%zu bytes, need at least 8)", path, got);
    goto done;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | head[i];
  free(head);
  head = NULL;
  if (check_hlen(hlen, fsize >= 8 ? fsize - 8 : 0, path, err, errlen) ||
      read_upto(f, hlen, &head, &got, path, err, errlen))
    goto done;
  if (got < hlen) { /* the stream ended early (or the file shrank) */
    check_hlen(hlen, got, path, err, errlen);
    goto done;
  }
  if (parse_header((const char *)head, got, path, &es, &n, err, errlen)) goto done;
  /* the data section: the rest of a regular file (as the offsets are checked
   * against it), of a stream only as far as the last tensor's end */
  uint64_t want = 0;
  if (sized) want = fsize - 8 - hlen;
  else
    for (int i = 0; i < n; i++)
      if ((uint64_t)es[i].end > want) want = (uint64_t)es[i].end;
  if (read_upto(f, want, &data, &got, path, err, errlen)) goto done;
  rc = build_set(es, n, data, got, path, out, err, errlen);
done:
  fclose(f);
  free(head);
  free(data);
  free_entries(es, n);
  return rc;
}

/* ---- writer ------------------------------------------------------------ */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} Buf;

static void bput(Buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + n + 1) nc *= 2;
    char *ns = realloc(b->s, nc);
    if (!ns) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = nc;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void bputs(Buf *b, const char *s) { bput(b, s, strlen(s)); }

static void bput_json_string(Buf *b, const char *s) {
  bputs(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char tmp[8];
    if (*p == '"') bputs(b, "\\\"");
    else if (*p == '\\') bputs(b, "\\\\");
    else if (*p < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", *p);
      bputs(b, tmp);
    } else bput(b, (const char *)p, 1);
  }
  bputs(b, "\"");
}

/* Builds the padded JSON header of `set` (data in insertion order). */
static int build_header(const DlrtTensorSet *set, Buf *h, const char *path, char *err,
                        size_t errlen) {
  uint64_t off = 0;
  bputs(h, "{");
  for (int i = 0; i < set->n; i++) {
    const DlrtTensor *t = &set->t[i];
    const char *dt = dlrt_dtype_name(t->dtype);
    if (!dt || t->rank < 0 || t->rank > DLRT_MAX_RANK || !t->name) {
      seterr(err, errlen, "cannot write %s: tensor #%d has an invalid dtype or rank", path, i);
      return -1;
    }
    if (strcmp(t->name, "__metadata__") == 0) {
      seterr(err, errlen, "cannot write %s: '__metadata__' is not a valid tensor name", path);
      return -1;
    }
    for (int j = 0; j < i; j++)
      if (strcmp(set->t[j].name, t->name) == 0) {
        seterr(err, errlen, "cannot write %s: duplicate tensor name '%s'", path, t->name);
        return -1;
      }
    int64_t numel = dlrt_numel(t->shape, t->rank);
    if (numel < 0 || (size_t)numel * dlrt_dtype_size(t->dtype) != t->nbytes) {
      seterr(err, errlen, "cannot write %s: tensor '%s' has nbytes %zu inconsistent with its shape",
             path, t->name, t->nbytes);
      return -1;
    }
    char tmp[64];
    if (i) bputs(h, ",");
    bput_json_string(h, t->name);
    bputs(h, ":{\"dtype\":\"");
    bputs(h, dt);
    bputs(h, "\",\"shape\":[");
    for (int k = 0; k < t->rank; k++) {
      snprintf(tmp, sizeof tmp, "%s%lld", k ? "," : "", (long long)t->shape[k]);
      bputs(h, tmp);
    }
    snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + t->nbytes));
    bputs(h, tmp);
    off += t->nbytes;
  }
  bputs(h, "}");
  while (!h->oom && h->len % 8 != 0) bputs(h, " ");
  if (h->oom) {
    seterr(err, errlen, "cannot write %s: out of memory", path);
    return -1;
  }
  return 0;
}

int dlrt_st_write(const char *path, const DlrtTensorSet *set, char *err, size_t errlen) {
  static const DlrtTensorSet empty = {0, 0, NULL};
  if (!set) set = &empty;
  Buf h = {0};
  if (build_header(set, &h, path, err, errlen)) {
    free(h.s);
    return -1;
  }
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    free(h.s);
    seterr(err, errlen, "cannot write %s: out of memory", path);
    return -1;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    seterr(err, errlen, "cannot write %s: %s", path, strerror(e));
    free(tmp);
    free(h.s);
    return -1;
  }
  (void)fchmod(fd, 0644);
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    int e = errno;
    close(fd);
    unlink(tmp);
    seterr(err, errlen, "cannot write %s: %s", path, strerror(e));
    free(tmp);
    free(h.s);
    return -1;
  }
  errno = 0;
  unsigned char lenb[8];
  uint64_t hl = h.len;
  for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hl >> (8 * i));
  int ok = fwrite(lenb, 1, 8, f) == 8 && fwrite(h.s, 1, h.len, f) == h.len;
  for (int i = 0; ok && i < set->n; i++) {
    const DlrtTensor *t = &set->t[i];
    if (t->nbytes && fwrite(t->data, 1, t->nbytes, f) != t->nbytes) ok = 0;
  }
  int e = 0;
  if (!ok) e = errno ? errno : EIO;
  if (ok && fflush(f) != 0) { ok = 0; e = errno; }
  if (ok && fsync(fileno(f)) != 0) { ok = 0; e = errno; }
  if (fclose(f) != 0 && ok) { ok = 0; e = errno; }
  if (ok && rename(tmp, path) != 0) { ok = 0; e = errno; }
  if (!ok) {
    unlink(tmp);
    seterr(err, errlen, "cannot write %s: %s", path, strerror(e ? e : EIO));
    free(tmp);
    free(h.s);
    return -1;
  }
  /* Best effort: make the rename itself durable. */
  char *dir = xstrdup(path);
  if (dir) {
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
      if (slash == dir) slash[1] = 0;
      else *slash = 0;
      d = dir;
    }
    int dfd = open(d, O_RDONLY);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
  free(tmp);
  free(h.s);
  return 0;
}
