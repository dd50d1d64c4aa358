/* one_model.c — a user's program linked with one model's object, exactly as
 * model.h says: `dlc xor_mlp.dl -o xor_mlp.o && cc one_model.c xor_mlp.o
 * -lm -fopenmp` (no libdlrt.a: the object holds the runtime). Trains XOR,
 * predicts, saves and reloads a checkpoint. Exit 0 when every check holds. */
#include <stdio.h>
#include <string.h>

#include "xor_mlp.h"

#define CHECK(cond, what)                               \
  do {                                                  \
    if (!(cond)) {                                      \
      fprintf(stderr, "one_model: FAILED: %s\n", what); \
      return 1;                                         \
    }                                                   \
  } while (0)

int main(int argc, char **argv) {
  const char *ckpt = argc > 1 ? argv[1] : "xor_o.safetensors";
  float x[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}}, logits[4][2];
  int32_t y[4] = {0, 1, 1, 0};
  const void *inputs[] = {x}, *labels[] = {y};
  void *outputs[] = {logits};
  DlcModel *m = NULL, *m2 = NULL;
  CHECK(xor_mlp_set_threads(2) == DLC_OK, "set_threads");
  CHECK(xor_mlp_create(42, &m) == DLC_OK, "create");
  float loss = 0, acc = 0;
  for (int step = 0; step < 300; step++) CHECK(xor_mlp_train_step(m, inputs, labels, &loss) == DLC_OK, "train_step");
  CHECK(xor_mlp_eval_step(m, inputs, labels, &loss, &acc) == DLC_OK, "eval_step");
  printf("xor_mlp.o: loss %.5f, accuracy %.2f\n", loss, acc);
  CHECK(acc == 1.0f, "accuracy");
  CHECK(xor_mlp_save(m, ckpt) == DLC_OK, xor_mlp_error(m));
  CHECK(xor_mlp_create(7, &m2) == DLC_OK, "create 2");
  CHECK(xor_mlp_load(m2, ckpt) == DLC_OK, xor_mlp_error(m2));
  CHECK(xor_mlp_predict(m2, inputs, outputs) == DLC_OK, "predict");
  for (int i = 0; i < 4; i++) CHECK((logits[i][1] > logits[i][0]) == y[i], "prediction");
  CHECK(xor_mlp_train_step(NULL, inputs, labels, &loss) == DLC_ERR_NULL, "NULL handle");
  /* a class index out of range: an error naming it, and no step taken */
  int32_t bad_y[4] = {0, 1, 2, 0};
  const void *bad_labels[] = {bad_y};
  CHECK(xor_mlp_train_step(m2, inputs, bad_labels, &loss) == DLC_ERR_ARG, "class index out of range");
  CHECK(strstr(xor_mlp_error(m2), "value 2 at index 2 is not a class index in [0, 2)") != NULL, xor_mlp_error(m2));
  CHECK(xor_mlp_predict(m2, inputs, outputs) == DLC_OK, "predict after a refused step");
  for (int i = 0; i < 4; i++) CHECK((logits[i][1] > logits[i][0]) == y[i], "prediction after a refused step");
  xor_mlp_destroy(m);
  xor_mlp_destroy(m2);
  printf("one_model: all checks passed\n");
  return 0;
}
