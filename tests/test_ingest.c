/* test_ingest.c - `steward ingest` end to end: the real binary (argv[1]) on a real store.
 *
 * Checks the summary line, that a re-run adds nothing twice (identical chunks are unchanged),
 * that --publish publishes, that vectors from a separate float32 file give the same content
 * hash as the same vectors inline, that a bad line stops the load naming the line with the
 * earlier batches kept and nothing of its own batch stored, that the repaired file then
 * completes the version, and that a non-terminal gets plain progress lines. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "steward.h"

#define N   2500
#define DIM 8

static const char *bin;
static char dir[64];
static float vecs[N][DIM];

/* Writes the JSONL (inline vectors unless f32 != NULL, then also the float32 file); line
 * `bad` (1-based, 0 for none) has no labels. */
static void write_input(const char *jsonl, const char *f32, int bad)
{
    FILE *f = fopen(jsonl, "w"), *v = f32 ? fopen(f32, "wb") : NULL;
    for (int i = 0; f != NULL && i < N; i++) {
        fprintf(f, "{\"id\":\"c%05d\",\"text\":\"note %d\",", i, i);
        if (v == NULL) {
            fputs("\"vector\":[", f);
            for (int j = 0; j < DIM; j++)
                fprintf(f, "%s%.9g", j ? "," : "", (double)vecs[i][j]);
            fputs("],", f);
        } else {
            fwrite(vecs[i], sizeof(float), DIM, v);
        }
        if (i + 1 != bad)
            fputs("\"labels\":{\"confidentiality\":\"N\"},", f);
        fprintf(f, "\"provenance\":{\"source_system\":\"ehr\",\"subject\":\"patient-%d\"}}\n",
                i % 17);
    }
    if (f != NULL)
        fclose(f);
    if (v != NULL)
        fclose(v);
}

/* Runs `steward ingest ARGS`; returns the exit status and the parsed stdout JSON (or NULL). */
static int ingest(const char *args, cJSON **summary, char *err_text, size_t cap)
{
    char cmd[1024], out[256], errf[256], buf[4096];
    FILE *f;
    int st;
    size_t n;

    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(errf, sizeof errf, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "%s ingest --data %s/store %s > %s 2> %s", bin, dir, args, out,
             errf);
    st = system(cmd);
    *summary = NULL;
    f = fopen(out, "r");
    if (f != NULL) {
        n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        *summary = cJSON_Parse(buf);
        fclose(f);
    }
    err_text[0] = '\0';
    f = fopen(errf, "r");
    if (f != NULL) {
        n = fread(err_text, 1, cap - 1, f);
        err_text[n] = '\0';
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

int main(int argc, char **argv)
{
    char path[256], jsonl[256], f32[256], args[768], key[STW_KEY_MAX], errtext[8192];
    char hash1[STW_HASH_STR_MAX] = "";
    stw_error err;
    stw_db *db = NULL;
    stw_principal admin;
    stw_product p;
    stw_version_info vi;
    cJSON *s = NULL;
    uint64_t rng = 12345;

    if (argc < 2) {
        fprintf(stderr, "usage: test_ingest STEWARD_BINARY\n");
        return 2;
    }
    bin = argv[1];
    snprintf(dir, sizeof dir, "/tmp/stw-ingest-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < DIM; j++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            vecs[i][j] = (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
        }
    snprintf(path, sizeof path, "%s/store", dir);
    if (!CHECK(stw_init(path, key, &err) == STW_OK) ||
        !CHECK(stw_open(path, NULL, &db, &err) == STW_OK) ||
        !CHECK(stw_authenticate(db, key, &admin, &err) == STW_OK))
        goto out;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "notes");
    snprintf(p.domain, sizeof p.domain, "clinical");
    snprintf(p.contract.embedding_model, sizeof p.contract.embedding_model, "m");
    p.contract.dimension = DIM;
    p.contract.metric = STW_METRIC_COSINE;
    p.contract.nprovenance_required = 1;
    snprintf(p.contract.provenance_required[0], STW_LABEL_MAX + 1, "source_system");
    CHECK(stw_product_create(db, &admin, &p, &err) == STW_OK);
    stw_close(db);
    db = NULL;

    /* 1. load, then re-run with --publish: nothing twice */
    snprintf(jsonl, sizeof jsonl, "%s/in.jsonl", dir);
    write_input(jsonl, NULL, 0);
    snprintf(args, sizeof args, "--product notes --version v1 --batch 100 %s", jsonl);
    CHECK_EQ_INT(ingest(args, &s, errtext, sizeof errtext), 0);
    CHECK(s != NULL && num(s, "accepted") == N && num(s, "unchanged") == 0);
    CHECK(s != NULL && strcmp(str(s, "state"), "draft") == 0);
    CHECKF(strstr(errtext, "ingest: ") != NULL, "no progress lines on a non-terminal: %s",
           errtext);
    cJSON_Delete(s);
    snprintf(args, sizeof args, "--product notes --version v1 --publish %s", jsonl);
    CHECK_EQ_INT(ingest(args, &s, errtext, sizeof errtext), 0);
    CHECK(s != NULL && num(s, "accepted") == 0 && num(s, "unchanged") == N);
    CHECK(s != NULL && strcmp(str(s, "state"), "published") == 0 && num(s, "chunks") == N);
    if (s != NULL)
        snprintf(hash1, sizeof hash1, "%s", str(s, "content_hash"));
    CHECK(strncmp(hash1, "sha256:", 7) == 0);
    cJSON_Delete(s);

    /* 2. vectors from a float32 file: same content, same hash */
    snprintf(f32, sizeof f32, "%s/in.f32", dir);
    write_input(jsonl, f32, 0);
    snprintf(args, sizeof args, "--product notes --version v2 --vectors %s --publish %s", f32,
             jsonl);
    CHECK_EQ_INT(ingest(args, &s, errtext, sizeof errtext), 0);
    CHECK(s != NULL && num(s, "accepted") == N);
    CHECK_EQ_STR(s != NULL ? str(s, "content_hash") : "", hash1);
    cJSON_Delete(s);

    /* 3. a bad line: earlier batches kept, nothing of its batch; the repaired file completes */
    write_input(jsonl, NULL, 1500);
    snprintf(args, sizeof args, "--product notes --version v3 --batch 1000 %s", jsonl);
    CHECK_EQ_INT(ingest(args, &s, errtext, sizeof errtext), 1);
    CHECKF(strstr(errtext, "line 1500") != NULL, "error does not name the line: %s", errtext);
    cJSON_Delete(s);
    if (CHECK(stw_open(path, NULL, &db, &err) == STW_OK)) {
        CHECK(stw_version_get(db, &admin, "notes", "v3", &vi, &err) == STW_OK);
        CHECK_EQ_INT(vi.chunks, 1000);
        stw_close(db);
        db = NULL;
    }
    write_input(jsonl, NULL, 0);
    snprintf(args, sizeof args, "--product notes --version v3 --batch 1000 --publish %s", jsonl);
    CHECK_EQ_INT(ingest(args, &s, errtext, sizeof errtext), 0);
    CHECK(s != NULL && num(s, "accepted") == N - 1000 && num(s, "unchanged") == 1000);
    CHECK_EQ_STR(s != NULL ? str(s, "content_hash") : "", hash1);
    cJSON_Delete(s);

    /* 4. usage errors exit 2 */
    CHECK_EQ_INT(ingest("--product notes", &s, errtext, sizeof errtext), 2);
    cJSON_Delete(s);
out:
    stw_close(db);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    if (system(args) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("ingest");
}
