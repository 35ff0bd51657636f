/* inrgan's native CPU kernels for inference (see native.py, which compiles and loads this file).
 *
 * Single-threaded by design: the sample-parallel path (threads.py) runs one call per worker thread.
 * Written with GCC/Clang vector extensions, so the same source becomes AVX-512, AVX2 or NEON code under
 * -march=native; accumulators are explicit vectors, so no -ffast-math is needed.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
typedef float vf __attribute__((vector_size(LANES * sizeof(float))));

static inline vf load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}

static inline void store(float *p, vf v) { memcpy(p, &v, sizeof v); }

typedef int32_t vi __attribute__((vector_size(LANES * sizeof(int32_t))));

/* The sum of a vector's lanes: halves added four times (a tree, not a chain of 15 dependent adds). */
static inline float hsum(vf v) {
#if defined(__clang__)
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
    v += __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
#else
    v += __builtin_shuffle(v, (vi){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    v += __builtin_shuffle(v, (vi){4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3});
    v += __builtin_shuffle(v, (vi){2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1});
    v += __builtin_shuffle(v, (vi){1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0});
#endif
    return v[0];
}

#define HEAD_GROUP 4  /* samples held in registers per pass over the rows */
#define HEAD_BLOCK 64 /* rows per block: 64 x 512 floats stay in L2 while every group of samples reads them */

/* The affine heads: out[b, r] = gain * dot(weight[r, :], x[b, :]) + bias[r] for r in [r0, r1), b < batch.
 * weight [n, k] row-major, x [batch, k] row-major, bias [n] or NULL, out [batch, n] row-major.
 * One pass over the weight per group of four samples, in row blocks that stay in cache between groups:
 * the weight is streamed from memory once for a batch of up to four, at four multiply-adds per load.
 * (Blocking two or four rows per step, or prefetching, measured slower on Zen 4: see performance.md.) */
void inrgan_heads(const float *weight, const float *x, const float *bias, float gain, float *out,
                  int64_t n, int64_t k, int64_t batch, int64_t r0, int64_t r1) {
    const int64_t kv = k - k % LANES;
    for (int64_t s = r0; s < r1; s += HEAD_BLOCK) {
        const int64_t e = s + HEAD_BLOCK < r1 ? s + HEAD_BLOCK : r1;
        for (int64_t c = 0; c < batch; c += HEAD_GROUP) {
            const int64_t g = batch - c < HEAD_GROUP ? batch - c : HEAD_GROUP;
            /* a group of fewer than four repeats its first sample (computed, not stored) */
            const float *x0 = x + c * k;
            const float *x1 = x + (c + (g > 1 ? 1 : 0)) * k;
            const float *x2 = x + (c + (g > 2 ? 2 : 0)) * k;
            const float *x3 = x + (c + (g > 3 ? 3 : 0)) * k;
            float *o = out + c * n;
            for (int64_t r = s; r < e; r++) {
                const float *row = weight + r * k;
                vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int64_t j = 0; j < kv; j += LANES) {
                    const vf v = load(row + j);
                    a0 += v * load(x0 + j);
                    a1 += v * load(x1 + j);
                    a2 += v * load(x2 + j);
                    a3 += v * load(x3 + j);
                }
                float d0 = hsum(a0), d1 = hsum(a1), d2 = hsum(a2), d3 = hsum(a3);
                for (int64_t j = kv; j < k; j++) {
                    d0 += row[j] * x0[j];
                    d1 += row[j] * x1[j];
                    d2 += row[j] * x2[j];
                    d3 += row[j] * x3[j];
                }
                const float b = bias ? bias[r] : 0.0f;
                o[r] = gain * d0 + b;
                if (g > 1) o[n + r] = gain * d1 + b;
                if (g > 2) o[2 * n + r] = gain * d2 + b;
                if (g > 3) o[3 * n + r] = gain * d3 + b;
            }
        }
    }
}

#define MOD_ROWS 4  /* output rows sharing each load of the factor B */
#define MAX_RANK 64 /* the caller falls back to torch above it */

/* FMM weights, W_s (1 + A B / sqrt r), optionally demodulated, for one sample, cut at input channel split:
 *   w[i, j] = shared[i, j] * (1 + scale * sum_t a[i, t] b[t, j])
 *   d[i]    = 1 / (||w[i, :]|| + eps) if demodulate else 1
 *   out0[i, j] = w[i, j] * d[i] * gain0 for j < split; out1[i, j - split] = w[i, j] * d[i] * gain1 after.
 * shared [c_out, c_in], a [c_out, rank], b [rank, c_in], out0 [c_out, split], out1 [c_out, c_in - split]
 * (NULL when split == c_in), all row-major; rank <= MAX_RANK. scratch holds MOD_ROWS * c_in floats. */
void inrgan_fmm_weight(const float *shared, const float *a, const float *b, float *out0, float *out1,
                       int64_t c_out, int64_t c_in, int64_t rank, int64_t split, float scale, int demodulate,
                       float eps, float gain0, float gain1, float *scratch) {
    const int64_t cv = c_in - c_in % LANES;
    for (int64_t i0 = 0; i0 < c_out; i0 += MOD_ROWS) {
        const int64_t rows = c_out - i0 < MOD_ROWS ? c_out - i0 : MOD_ROWS;
        /* a's rows, times scale: padded rows repeat the last one (computed, then not stored) */
        float as[MOD_ROWS][MAX_RANK];
        for (int64_t q = 0; q < MOD_ROWS; q++) {
            const int64_t i = i0 + (q < rows ? q : rows - 1);
            for (int64_t t = 0; t < rank; t++) as[q][t] = a[i * rank + t] * scale;
        }
        vf sq0 = {0}, sq1 = {0}, sq2 = {0}, sq3 = {0};
        const float *s0 = shared + (i0 + 0) * c_in;
        const float *s1 = shared + (i0 + (rows > 1 ? 1 : 0)) * c_in;
        const float *s2 = shared + (i0 + (rows > 2 ? 2 : 0)) * c_in;
        const float *s3 = shared + (i0 + (rows > 3 ? 3 : 0)) * c_in;
        float *w0 = scratch, *w1 = scratch + c_in, *w2 = scratch + 2 * c_in, *w3 = scratch + 3 * c_in;
        for (int64_t j = 0; j < cv; j += LANES) {
            vf m0 = {0}, m1 = {0}, m2 = {0}, m3 = {0};
            for (int64_t t = 0; t < rank; t++) {
                const vf bt = load(b + t * c_in + j);
                m0 += bt * as[0][t];
                m1 += bt * as[1][t];
                m2 += bt * as[2][t];
                m3 += bt * as[3][t];
            }
            vf v;
            v = load(s0 + j); v = v + v * m0; store(w0 + j, v); sq0 += v * v;
            v = load(s1 + j); v = v + v * m1; store(w1 + j, v); sq1 += v * v;
            v = load(s2 + j); v = v + v * m2; store(w2 + j, v); sq2 += v * v;
            v = load(s3 + j); v = v + v * m3; store(w3 + j, v); sq3 += v * v;
        }
        float sq[4] = {hsum(sq0), hsum(sq1), hsum(sq2), hsum(sq3)};
        float *wq[4] = {w0, w1, w2, w3};
        const float *sh[4] = {s0, s1, s2, s3};
        for (int64_t j = cv; j < c_in; j++) {
            for (int q = 0; q < 4; q++) {
                float m = 0.0f;
                for (int64_t t = 0; t < rank; t++) m += as[q][t] * b[t * c_in + j];
                const float v = sh[q][j] + sh[q][j] * m;
                wq[q][j] = v;
                sq[q] += v * v;
            }
        }
        for (int64_t q = 0; q < rows; q++) {
            const float d = demodulate ? 1.0f / (sqrtf(sq[q]) + eps) : 1.0f;
            const int64_t i = i0 + q;
            const float g0 = d * gain0, g1 = d * gain1;
            for (int64_t j = 0; j < split; j++) out0[i * split + j] = wq[q][j] * g0;
            for (int64_t j = split; j < c_in; j++) out1[i * (c_in - split) + (j - split)] = wq[q][j] * g1;
        }
    }
}
