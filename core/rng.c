#include "rng.h"
#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void blt_rng_seed(blt_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t blt_rng_next(blt_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double blt_rng_uniform(blt_rng *r) { return (double)(blt_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t blt_rng_below(blt_rng *r, uint64_t n)
{
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the short last run */
    uint64_t x;
    do x = blt_rng_next(r); while (x >= limit);
    return x % n;
}

double blt_rng_normal(blt_rng *r)
{
    /* Marsaglia polar method; the second value is dropped so the state alone
     * (four words) describes the stream, which keeps checkpoints simple. */
    for (;;) {
        double u = 2.0 * blt_rng_uniform(r) - 1.0, v = 2.0 * blt_rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) return u * sqrt(-2.0 * log(s) / s);
    }
}

double blt_rng_trunc_normal(blt_rng *r, double sigma)
{
    for (;;) {
        double z = blt_rng_normal(r);
        if (z >= -3.0 && z <= 3.0) return z * sigma;
    }
}
