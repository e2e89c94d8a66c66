/* Portable random numbers: xoshiro256** seeded through splitmix64. Integer
 * arithmetic only up to the uniform draw, so the same seed gives the same stream
 * on every machine; normals use the polar method in double precision. */
#ifndef BLT_RNG_H
#define BLT_RNG_H
#include <stdint.h>

typedef struct { uint64_t s[4]; } blt_rng;

void blt_rng_seed(blt_rng *r, uint64_t seed);
uint64_t blt_rng_next(blt_rng *r);
double blt_rng_uniform(blt_rng *r);              /* [0, 1), 53 random bits */
uint64_t blt_rng_below(blt_rng *r, uint64_t n);  /* uniform in [0, n), unbiased */
double blt_rng_normal(blt_rng *r);               /* standard normal */
/* Normal with std sigma, redrawn until within +-3 sigma (docs/model.md). */
double blt_rng_trunc_normal(blt_rng *r, double sigma);

#endif
