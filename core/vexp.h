/* Vectorisable helpers for softmax-like loops. exp over arrays, written so the compiler vectorises it (glibc's expf is a call per
 * element, which made the softmax of attention cost more than its matrix products
 * at head size 32). Cephes' method: x = k ln2 + r with |r| <= ln2/2, a degree-6
 * polynomial for e^r (relative error about 2e-7, close to float's 6e-8), then the
 * exponent bits for 2^k. Inputs below -87.3 (and -inf) give exactly 0, above 88.7
 * (and +inf) +inf, NaN gives NaN. */
#ifndef BLT_VEXP_H
#define BLT_VEXP_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* x[i] = exp(x[i] - shift), in place. */
static inline void blt_vexp_shift(float *x, float shift, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] - shift;
        /* written so NaN lands inside the clamp (comparisons with NaN are false): the
         * int conversion and shift below then stay defined for every input */
        float z = v < 88.3f ? v : 88.3f;
        z = z > -87.3f ? z : -87.3f;
        /* round to nearest by the 1.5 * 2^23 trick (vectorises; |z log2 e| < 2^22) */
        float k = (z * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        float r = z - k * 0.693359375f;
        r = r - k * -2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        float e = p * r * r + r + 1.0f;
        int32_t bits = ((int32_t)k + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        float y = e * scale;
        y = v > 88.7f ? INFINITY : y; /* float overflows above ln(FLT_MAX) = 88.72 */
        y = v != v ? v : y;           /* NaN stays NaN */
        x[i] = v < -87.3f ? 0.0f : y;
    }
}

/* max and sum of x[0..n) with 8 independent lanes, so they vectorise without
 * -ffast-math (the order of a sum is then fixed by n alone: still deterministic). */
static inline float blt_vmax(const float *x, int64_t n, float init)
{
    float m[8] = {init, init, init, init, init, init, init, init};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float r = m[0];
    for (int j = 1; j < 8; j++) r = m[j] > r ? m[j] : r;
    return r;
}

static inline float blt_vsum(const float *x, int64_t n)
{
    float a[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += x[i + j];
    for (; i < n; i++) a[0] += x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* sum of exp(x[i] - shift), through a stack buffer in pieces of 256 */
static inline float blt_vexp_sum(const float *x, float shift, int64_t n)
{
    float tmp[256], s = 0.0f;
    for (int64_t i = 0; i < n; i += 256) {
        int64_t k = n - i < 256 ? n - i : 256;
        memcpy(tmp, x + i, sizeof(float) * (size_t)k);
        blt_vexp_shift(tmp, shift, k);
        s += blt_vsum(tmp, k);
    }
    return s;
}

/* y[i] += a * exp(x[i] - shift) */
static inline void blt_vexp_axpy(float *y, const float *x, float shift, float a, int64_t n)
{
    float tmp[256];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t k = n - i < 256 ? n - i : 256;
        memcpy(tmp, x + i, sizeof(float) * (size_t)k);
        blt_vexp_shift(tmp, shift, k);
        for (int64_t c = 0; c < k; c++) y[i + c] += a * tmp[c];
    }
}

#endif
