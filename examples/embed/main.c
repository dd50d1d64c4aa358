/* main.c — embedding dlc models in a C program.
 *
 * Links two libraries made by `dlc`: xor_mlp.so (examples/xor_mlp.dl) and
 * linreg.so (examples/linreg.dl). Trains the XOR network on its four points,
 * saves a checkpoint, reloads it into a fresh instance, predicts, and shows
 * that bad use of the API returns error codes with messages (a NULL handle,
 * a checkpoint of another model, an unwritable path) instead of aborting.
 *
 *   dlc examples/xor_mlp.dl -o xor_mlp.so && dlc examples/linreg.dl -o linreg.so
 *   cc main.c xor_mlp.so linreg.so -Wl,-rpath,. -o embed && ./embed /tmp/xor.safetensors
 * Exit status 0 when every check holds. */
#include <stdio.h>
#include <string.h>

#include "linreg.h"
#include "xor_mlp.h"

#define CHECK(cond, ...)                         \
  do {                                           \
    if (!(cond)) {                               \
      fprintf(stderr, "embed: FAILED: " __VA_ARGS__); \
      fputc('\n', stderr);                       \
      return 1;                                  \
    }                                            \
  } while (0)

int main(int argc, char **argv) {
  const char *ckpt = argc > 1 ? argv[1] : "xor.safetensors";
  /* describe the model generically */
  int n = xor_mlp_num_tensors();
  printf("xor_mlp has %d tensors:\n", n);
  for (int i = 0; i < n; i++) {
    DlcTensorInfo t;
    CHECK(xor_mlp_tensor_info(i, &t) == DLC_OK, "tensor_info(%d)", i);
    printf("  role %d  %-14s %s[", t.role, t.name, t.dtype ? "i32" : "f32");
    for (int k = 0; k < t.rank; k++) printf(k ? ",%lld" : "%lld", (long long)t.shape[k]);
    printf("]\n");
  }
  CHECK(xor_mlp_tensor_info(n, &(DlcTensorInfo){0}) == DLC_ERR_ARG, "tensor_info out of range");

  /* train on the four XOR points */
  float x[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
  int32_t y[4] = {0, 1, 1, 0};
  const void *inputs[] = {x}, *labels[] = {y};
  DlcModel *m = NULL;
  CHECK(xor_mlp_create(42, &m) == DLC_OK, "create");
  float loss = 0;
  for (int step = 0; step < 300; step++) CHECK(xor_mlp_train_step(m, inputs, labels, &loss) == DLC_OK, "train_step");
  float eval_loss = 0, acc = 0;
  CHECK(xor_mlp_eval_step(m, inputs, labels, &eval_loss, &acc) == DLC_OK, "eval_step");
  printf("after 300 steps: loss %.5f, accuracy %.2f\n", eval_loss, acc);
  CHECK(acc == 1.0f, "accuracy %.2f", acc);
  CHECK(xor_mlp_save(m, ckpt) == DLC_OK, "save: %s", xor_mlp_error(m));

  /* reload into a fresh instance and predict */
  DlcModel *m2 = NULL;
  CHECK(xor_mlp_create(7, &m2) == DLC_OK, "create 2");
  CHECK(xor_mlp_load(m2, ckpt) == DLC_OK, "load: %s", xor_mlp_error(m2));
  float logits[4][2];
  void *outputs[] = {logits};
  CHECK(xor_mlp_predict(m2, inputs, outputs) == DLC_OK, "predict");
  for (int i = 0; i < 4; i++) {
    int cls = logits[i][1] > logits[i][0];
    printf("  %g xor %g -> %d\n", x[i][0], x[i][1], cls);
    CHECK(cls == y[i], "prediction %d", i);
  }

  /* bad use: error codes and messages, never an abort */
  CHECK(xor_mlp_train_step(NULL, inputs, labels, &loss) == DLC_ERR_NULL, "NULL handle");
  CHECK(xor_mlp_predict(m2, NULL, outputs) == DLC_ERR_NULL, "NULL inputs");
  CHECK(xor_mlp_create(0, NULL) == DLC_ERR_NULL, "NULL out");
  DlcModel *lr = NULL;
  CHECK(linreg_create(1, &lr) == DLC_OK, "linreg create");
  CHECK(linreg_load(lr, ckpt) == DLC_ERR_MISMATCH, "loading another model's checkpoint");
  printf("linreg_load(xor checkpoint): %s\n", linreg_error(lr));
  CHECK(strstr(linreg_error(lr), "W1") != NULL, "the message names the mismatch");
  CHECK(xor_mlp_save(m, "/nonexistent-dir/x.safetensors") == DLC_ERR_IO, "unwritable path");
  printf("save to an unwritable path: %s\n", xor_mlp_error(m));
  CHECK(xor_mlp_load(m, "/nonexistent-dir/x.safetensors") == DLC_ERR_IO, "missing file");
  linreg_destroy(lr);
  xor_mlp_destroy(m);
  xor_mlp_destroy(m2);
  xor_mlp_destroy(NULL);
  printf("embed: all checks passed\n");
  return 0;
}
