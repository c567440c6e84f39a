/* load_gen.c - synthetic data for scripts/load.sh (not part of the steward build).
 *
 *   load_gen chunks N DIM SEED OUT.jsonl OUT.f32
 *       N chunk lines (no "vector": steward ingest --vectors supplies it) and N rows of DIM
 *       little-endian float32, clustered around 256 random centres so that nearest-neighbour
 *       search has structure to find, with a mix of labels, compartments, sections, subjects
 *       and dates for the grants and filters to select on.
 *   load_gen queries COUNT DIM SEED ROWS.f32 NROWS OUT.bodies KEY=PURPOSE...
 *       COUNT lines "KEY<TAB>BODY": query bodies (k=10, product "notes") whose vectors are data
 *       rows plus noise, rotating over the principals, a third of them with a filter.
 *
 * Deterministic for a seed. Plain C11, no dependencies: cc -O2 -o load_gen load_gen.c -lm
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCENTRES 256

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static double rng_unit(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0; /* [0, 1) */
}

static size_t rng_below(size_t n)
{
    return (size_t)(rng_unit() * (double)n);
}

static double rng_gauss(void)
{
    double u = rng_unit(), v = rng_unit();

    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static const char *const sections[] = {"hpi",         "assessment", "plan",
                                       "medications", "labs",       "summary"};
static const char *const systems[] = {"ehr", "lis", "pacs"};
static const char *const roles[] = {"physician", "nurse", "psychiatrist", "pharmacist"};

static int gen_chunks(size_t n, size_t dim, const char *jsonl, const char *f32)
{
    FILE *fj = fopen(jsonl, "w"), *fv = fopen(f32, "wb");
    float *centres = malloc(NCENTRES * dim * sizeof *centres);
    float *row = malloc(dim * sizeof *row);
    size_t i, d;
    int rc = 1;

    if (fj == NULL || fv == NULL || centres == NULL || row == NULL) {
        perror("load_gen");
        goto done;
    }
    for (i = 0; i < NCENTRES * dim; i++)
        centres[i] = (float)rng_gauss();
    for (i = 0; i < n; i++) {
        const float *c = centres + rng_below(NCENTRES) * dim;
        double u = rng_unit();
        /* confidentiality: 10% L, 20% M, 55% N, 15% R */
        const char *conf = u < 0.10 ? "L" : u < 0.30 ? "M" : u < 0.85 ? "N" : "R";
        double w = rng_unit();
        /* compartments: 8% PSY, 4% HIV, 3% SUD, else none */
        const char *comp = w < 0.08 ? "\"PSY\"" : w < 0.12 ? "\"HIV\"" : w < 0.15 ? "\"SUD\"" : "";
        const char *section = sections[rng_below(6)];
        size_t subject = rng_below(20000);

        for (d = 0; d < dim; d++)
            row[d] = c[d] + (float)(0.6 * rng_gauss());
        if (fwrite(row, sizeof *row, dim, fv) != dim) {
            perror("load_gen: vectors");
            goto done;
        }
        fprintf(fj,
                "{\"id\":\"c%07zu\",\"text\":\"Synthetic note %zu, %s section: patient reports "
                "stable symptoms; continue current plan and review in clinic.\","
                "\"labels\":{\"confidentiality\":\"%s\",\"compartments\":[%s]},"
                "\"provenance\":{\"source_system\":\"%s\",\"record_id\":\"enc-%zu\","
                "\"document_id\":\"doc-%zu\",\"section\":\"%s\",\"subject\":\"patient-%05zu\","
                "\"created_at\":\"202%zu-%02zu-%02zuT%02zu:%02zu:00Z\"},"
                "\"metadata\":{\"author_role\":\"%s\"}}\n",
                i, i, section, conf, comp, systems[rng_below(3)], i / 8, i / 4, section, subject,
                5 + rng_below(2), 1 + rng_below(12), 1 + rng_below(28), rng_below(24),
                rng_below(60), roles[rng_below(4)]);
    }
    rc = 0;
done:
    if (fj != NULL && fclose(fj) != 0)
        rc = 1;
    if (fv != NULL && fclose(fv) != 0)
        rc = 1;
    free(centres);
    free(row);
    return rc;
}

static int gen_queries(size_t count, size_t dim, const char *rows_path, size_t nrows,
                       const char *out_path, int nkeys, char **keys)
{
    FILE *fr = fopen(rows_path, "rb"), *fo = fopen(out_path, "w");
    float *row = malloc(dim * sizeof *row);
    size_t q, d;
    int rc = 1;

    if (fr == NULL || fo == NULL || row == NULL || nkeys < 1) {
        perror("load_gen");
        goto done;
    }
    for (q = 0; q < count; q++) {
        char key[256], purpose[32];
        const char *eq = strchr(keys[q % (size_t)nkeys], '=');
        size_t r = rng_below(nrows);

        if (eq == NULL || (size_t)(eq - keys[q % (size_t)nkeys]) >= sizeof key ||
            strlen(eq + 1) >= sizeof purpose) {
            fprintf(stderr, "load_gen: principals are KEY=PURPOSE\n");
            goto done;
        }
        memcpy(key, keys[q % (size_t)nkeys], (size_t)(eq - keys[q % (size_t)nkeys]));
        key[eq - keys[q % (size_t)nkeys]] = '\0';
        snprintf(purpose, sizeof purpose, "%s", eq + 1);
        if (fseek(fr, (long)(r * dim * sizeof *row), SEEK_SET) != 0 ||
            fread(row, sizeof *row, dim, fr) != dim) {
            fprintf(stderr, "load_gen: cannot read row %zu of %s\n", r, rows_path);
            goto done;
        }
        fprintf(fo, "%s\t{\"vector\":[", key);
        for (d = 0; d < dim; d++)
            fprintf(fo, "%s%.4f", d > 0 ? "," : "", row[d] + 0.3 * rng_gauss());
        fprintf(fo, "],\"k\":10,\"purpose\":\"%s\",\"products\":[\"notes\"]", purpose);
        switch (q % 6) {
        case 1: fprintf(fo, ",\"filter\":{\"section\":[\"plan\",\"assessment\"]}"); break;
        case 3:
            fprintf(fo, ",\"filter\":{\"created_from\":\"2026-01-01T00:00:00Z\"},"
                        "\"include\":[\"provenance\"]");
            break;
        case 5: fprintf(fo, ",\"filter\":{\"subject\":\"patient-%05zu\"}", rng_below(20000)); break;
        default: break;
        }
        fprintf(fo, "}\n");
    }
    rc = 0;
done:
    if (fr != NULL)
        fclose(fr);
    if (fo != NULL && fclose(fo) != 0)
        rc = 1;
    free(row);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "chunks") == 0) {
        rng_state = strtoull(argv[4], NULL, 10) * 2 + 1;
        return gen_chunks(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), argv[5],
                          argv[6]);
    }
    if (argc >= 9 && strcmp(argv[1], "queries") == 0) {
        rng_state = strtoull(argv[4], NULL, 10) * 2 + 3;
        return gen_queries(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), argv[5],
                           strtoull(argv[6], NULL, 10), argv[7], argc - 8, argv + 8);
    }
    fputs("usage: load_gen chunks N DIM SEED OUT.jsonl OUT.f32\n"
          "       load_gen queries COUNT DIM SEED ROWS.f32 NROWS OUT.bodies KEY=PURPOSE...\n",
          stderr);
    return 2;
}
