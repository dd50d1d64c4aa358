/* test_conformance.c — one conformance case (../shared/conformance/CASE):
 * runs `dlrun step` on it and compares gradients, updated params and
 * outputs with PyTorch's, elementwise within |got - want| <= 1e-5 + 1e-4|want|,
 * every expected name present; a case with expected_infer.safetensors (the
 * regression cases: PyTorch's eval-mode outputs) also runs `dlrun predict`
 * and compares its outputs. usage: test_conformance DLRUN CASEDIR [-O0]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/dlrt.h"

static int compare(const char *role, const char *got_path, const char *want_path) {
  DlrtTensorSet got, want;
  memset(&got, 0, sizeof got);
  memset(&want, 0, sizeof want);
  char err[512];
  if (dlrt_st_read(want_path, &want, err, sizeof err)) {
    printf("FAIL %s: %s\n", role, err);
    return 1;
  }
  if (dlrt_st_read(got_path, &got, err, sizeof err)) {
    printf("FAIL %s: %s\n", role, err);
    dlrt_st_free(&want);
    return 1;
  }
  int bad = 0;
  for (int i = 0; i < want.n; i++) {
    const DlrtTensor *w = &want.t[i];
    const DlrtTensor *g = dlrt_st_find(&got, w->name);
    if (!g) {
      printf("FAIL %s: missing %s\n", role, w->name);
      bad++;
      continue;
    }
    int same = g->rank == w->rank && g->dtype == w->dtype;
    for (int k = 0; same && k < w->rank; k++) same = g->shape[k] == w->shape[k];
    if (!same) {
      printf("FAIL %s: %s has another shape or dtype\n", role, w->name);
      bad++;
      continue;
    }
    int64_t n = dlrt_numel(w->shape, w->rank);
    double worst = 0;
    int64_t wi = -1;
    for (int64_t k = 0; k < n; k++) {
      double gv = w->dtype == DLRT_F32 ? ((float *)g->data)[k] : ((int32_t *)g->data)[k];
      double wv = w->dtype == DLRT_F32 ? ((float *)w->data)[k] : ((int32_t *)w->data)[k];
      double excess = fabs(gv - wv) - (1e-5 + 1e-4 * fabs(wv));
      if (!isfinite(gv) || excess > worst) {
        worst = isfinite(gv) ? excess : INFINITY;
        wi = k;
      }
    }
    if (wi >= 0) {
      double gv = w->dtype == DLRT_F32 ? ((float *)g->data)[wi] : ((int32_t *)g->data)[wi];
      double wv = w->dtype == DLRT_F32 ? ((float *)w->data)[wi] : ((int32_t *)w->data)[wi];
      printf("FAIL %s: %s[%lld] got %.7g want %.7g\n", role, w->name, (long long)wi, gv, wv);
      bad++;
    } else {
      printf("ok   %s: %s\n", role, w->name);
    }
  }
  dlrt_st_free(&got);
  dlrt_st_free(&want);
  return bad;
}

/* Runs argv (argv[0] the program) and waits: its exit status, -1 if it did not exit. */
static int run(const char *const *argv) {
  pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s DLRUN CASEDIR [OPTION]\n", argv[0]);
    return 2;
  }
  const char *dlrun = argv[1], *dir = argv[2], *opt = argc > 3 ? argv[3] : "-O2";
  char tmp[] = "/tmp/dlc-conf-XXXXXX";
  if (!mkdtemp(tmp)) return 2;
  char model[1024], params[1024], feed[1024], g[1024], p2[1024], o[1024], want[1024];
  snprintf(model, sizeof model, "%s/model.dl", dir);
  snprintf(params, sizeof params, "%s/params.safetensors", dir);
  snprintf(feed, sizeof feed, "%s/feed.safetensors", dir);
  snprintf(g, sizeof g, "%s/g.safetensors", tmp);
  snprintf(p2, sizeof p2, "%s/p2.safetensors", tmp);
  snprintf(o, sizeof o, "%s/o.safetensors", tmp);
  const char *step[] = {dlrun, "step", model, "--params", params, "--feed", feed, "--grads", g, "--out-params", p2,
                        "--out", o, opt, NULL};
  int status = run(step);
  int bad = 0;
  char oi[1024];
  snprintf(oi, sizeof oi, "%s/oi.safetensors", tmp);
  snprintf(want, sizeof want, "%s/expected_infer.safetensors", dir);
  if (access(want, R_OK) == 0) {
    const char *predict[] = {dlrun, "predict", model, "--load", params, "--feed", feed, "--out", oi, opt, NULL};
    int st = run(predict);
    if (st != 0) {
      printf("FAIL: dlrun predict exited with status %d\n", st);
      bad++;
    } else {
      bad += compare("infer", oi, want);
    }
    unlink(oi);
  }
  if (status != 0) {
    printf("FAIL: dlrun step exited with status %d\n", status);
    bad = 1;
  } else {
    snprintf(want, sizeof want, "%s/expected_grads.safetensors", dir);
    bad += compare("grads", g, want);
    snprintf(want, sizeof want, "%s/expected_params.safetensors", dir);
    bad += compare("params", p2, want);
    snprintf(want, sizeof want, "%s/expected_out.safetensors", dir);
    bad += compare("out", o, want);
  }
  unlink(g);
  unlink(p2);
  unlink(o);
  rmdir(tmp);
  printf("%s %s\n", bad ? "FAILED" : "PASSED", dir);
  return bad ? 1 : 0;
}
