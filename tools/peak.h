/* peak.h — the measured single-core fp32 FMA peak (GFLOP/s; 0 if unknown). */
#ifndef DLC_TOOLS_PEAK_H
#define DLC_TOOLS_PEAK_H
/* *isa (optional) names the vector extension used. */
double peak_gflops_per_core(const char **isa);
#endif
