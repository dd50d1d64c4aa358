/* init.c — parameter initialisation (zeros ... kaiming_normal) with the fans
 * of SPEC §2, drawing element i from counter i of the parameter's stream. */
#include "runtime/dlrt.h"

#include <math.h>

void dlrt_fans(const int64_t *shape, int rank, double *fan_in, double *fan_out) {
  double fi = 1, fo = 1;
  if (rank == 1) {
    fi = fo = (double)shape[0];
  } else if (rank == 2) {
    fi = (double)shape[0]; /* [in, out] */
    fo = (double)shape[1];
  } else if (rank >= 3) {
    /* [out, in/groups, k...] as torch.nn.init */
    double rf = 1;
    for (int i = 2; i < rank; i++) rf *= (double)shape[i];
    fi = (double)shape[1] * rf;
    fo = (double)shape[0] * rf;
  }
  if (fi < 1) fi = 1; /* empty dims: avoid division by zero */
  if (fo < 1) fo = 1;
  *fan_in = fi;
  *fan_out = fo;
}

void dlrt_init_tensor(float *data, const int64_t *shape, int rank, DlrtInit init,
                      uint64_t stream_seed) {
  int64_t n = dlrt_numel(shape, rank);
  double fi, fo;
  dlrt_fans(shape, rank, &fi, &fo);
  double bound = 0, stdv = 0;
  switch (init.kind) {
  case DLRT_INIT_ZEROS:
    for (int64_t i = 0; i < n; i++) data[i] = 0.0f;
    return;
  case DLRT_INIT_ONES:
    for (int64_t i = 0; i < n; i++) data[i] = 1.0f;
    return;
  case DLRT_INIT_CONSTANT:
    for (int64_t i = 0; i < n; i++) data[i] = init.a;
    return;
  case DLRT_INIT_NORMAL:
    for (int64_t i = 0; i < n; i++) data[i] = init.a * dlrt_normal(stream_seed, (uint64_t)i);
    return;
  case DLRT_INIT_UNIFORM:
    for (int64_t i = 0; i < n; i++)
      data[i] = init.a + (init.b - init.a) * dlrt_uniform01(stream_seed, (uint64_t)i);
    return;
  case DLRT_INIT_XAVIER_UNIFORM: bound = sqrt(6.0 / (fi + fo)); break;
  case DLRT_INIT_KAIMING_UNIFORM: bound = sqrt(2.0) * sqrt(3.0 / fi); break;
  case DLRT_INIT_XAVIER_NORMAL: stdv = sqrt(2.0 / (fi + fo)); break;
  case DLRT_INIT_KAIMING_NORMAL: stdv = sqrt(2.0) / sqrt(fi); break;
  default:
    for (int64_t i = 0; i < n; i++) data[i] = 0.0f;
    return;
  }
  if (bound > 0) {
    for (int64_t i = 0; i < n; i++)
      data[i] = (float)(bound * (2.0 * dlrt_uniform01(stream_seed, (uint64_t)i) - 1.0));
  } else {
    for (int64_t i = 0; i < n; i++)
      data[i] = (float)(stdv * dlrt_normal(stream_seed, (uint64_t)i));
  }
}
