/* test_crash.c - publish killed with SIGKILL at random moments, then the server restarted.
 *
 * One server and one data folder for the whole run. Setup: a cosine product of dimension 32,
 * a consumer with a grant, and N generated chunks; version "ref" gets them all and is published
 * uninterrupted: its content hash must equal the hash this test computes independently from
 * the chunks it sent (the canonical form of docs/versions.md), and its publish time T is the
 * scale for the kill delays. STEWARD_HNSW_MIN_ROWS is set low, so every publish also builds
 * an HNSW graph (the longest step).
 *
 * Then, first, a publish while other processes open the same store (`steward verify-version`,
 * whose stw_open runs the start-up cleanup): the publish must still succeed (the cleanup must
 * not remove the temporary folder of a publish in flight in another process).
 *
 * Then the loop (STW_CRASH_ITERATIONS, default 24; seed from STW_CRASH_SEED): a new draft
 * gets the same N chunks; the publish request is sent on its own connection; after a random
 * delay in [0, 1.25 T) (a fifth of the kills land just after a publish would have ended) the
 * server gets SIGKILL and is started again on the same folder. Then:
 *  - no ".tmp-*" folder is left under versions/, and no folder exists for a version that is
 *    not published;
 *  - the version is either a draft with all N chunks, which then publishes successfully, or
 *    published with N chunks; either way its content hash equals the expected one;
 *  - the restarted server answers a consumer's query over the version (k results,
 *    complete:true);
 *  - `steward verify-version` on it exits 0 with ok:true.
 * A published version named ".tmp-keep" (a valid name) must survive restarts.
 * Once, the state "folder renamed into place, commit never happened" is made by hand (a copy
 * of ref's folder under a draft's name): the restart must remove it and the draft must still
 * publish.
 *
 * Prints "crash loop: kills=K draft=A published=B failures=F".
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"

#define DIM       32
#define NCHUNKS   6000
#define BATCH     1000
#define PRODUCT   "crash"
#define K         5
#define HASH_MAX  72
#define DOTTED    ".tmp-keep" /* a valid version name that looks like a temporary folder */

static th_server srv;
static char *consumer_key;
static float vecs[NCHUNKS][DIM];
static char ids[NCHUNKS][32];
static char *batches[NCHUNKS / BATCH]; /* request bodies, printed once */
static char expected_hash[HASH_MAX];
static uint64_t rng;

static uint64_t rnd_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double rnd_unit(void)
{
    return (double)(rnd_u64() >> 11) / 9007199254740992.0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the chunks and their independent content hash --------------------------------------- */

static const char *compartments_of(size_t i)
{
    return i % 7 == 0 ? "PSY" : "";
}

static void make_chunks(void)
{
    for (size_t i = 0; i < NCHUNKS; i++) {
        snprintf(ids[i], sizeof ids[i], "note-%05zu#%zu", i / 3, i % 3);
        for (size_t j = 0; j < DIM; j++)
            vecs[i][j] = (float)(rnd_unit() * 2.0 - 1.0);
        vecs[i][0] += 0.01f; /* never the zero vector */
    }
}

static cJSON *chunk_json(size_t i)
{
    char text[96], doc[32], subject[32];
    snprintf(text, sizeof text, "Progress note %zu: \"stable\", plan unchanged \xc3\xa9.", i);
    snprintf(doc, sizeof doc, "doc-%zu", i / 3);
    snprintf(subject, sizeof subject, "patient-%03zu", i % 97);
    return th_chunk_new(ids[i], text, vecs[i], DIM, i % 2 ? "N" : "R", compartments_of(i), "ehr",
                        doc, i % 2 ? "plan" : "assessment", subject, "2026-10-30T14:05:00Z");
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The documented canonical form, built here from scratch: keys in byte order, no whitespace,
 * the vector as the SHA-256 of its float32 values. */
static void chunk_hash(size_t i, unsigned char out[32])
{
    cJSON *src = chunk_json(i), *o = cJSON_CreateObject(), *prov = cJSON_CreateObject();
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(src, "provenance");
    static const char *const prov_keys[] = {"created_at", "document_id", "record_id",
                                            "section",    "source_system", "subject"};
    unsigned char vh[32];
    char vhex[65], *text;

    EVP_Digest(vecs[i], sizeof vecs[i], vh, NULL, EVP_sha256(), NULL);
    hex(vh, 32, vhex);
    cJSON_AddItemToObject(o, "compartments", th_str_array(compartments_of(i)));
    cJSON_AddStringToObject(o, "confidentiality", i % 2 ? "N" : "R");
    cJSON_AddStringToObject(o, "id", ids[i]);
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "origin", "steward-tests");
    cJSON_AddItemToObject(o, "metadata", meta);
    for (size_t k = 0; k < sizeof prov_keys / sizeof prov_keys[0]; k++)
        cJSON_AddStringToObject(prov, prov_keys[k], th_str(sp, prov_keys[k]));
    cJSON_AddItemToObject(o, "provenance", prov);
    cJSON_AddStringToObject(o, "text", th_str(src, "text"));
    cJSON_AddStringToObject(o, "vector_sha256", vhex);
    text = cJSON_PrintUnformatted(o);
    EVP_Digest(text, strlen(text), out, NULL, EVP_sha256(), NULL);
    cJSON_free(text);
    cJSON_Delete(o);
    cJSON_Delete(src);
}

static int cmp_idx(const void *a, const void *b)
{
    return strcmp(ids[*(const size_t *)a], ids[*(const size_t *)b]);
}

/* SHA-256 over (chunk id, NUL, 32-byte chunk hash) in chunk-id byte order. */
static void content_hash(char out[HASH_MAX])
{
    static size_t order[NCHUNKS];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char h[32];
    char hx[65];

    for (size_t i = 0; i < NCHUNKS; i++)
        order[i] = i;
    qsort(order, NCHUNKS, sizeof order[0], cmp_idx);
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; i < NCHUNKS; i++) {
        chunk_hash(order[i], h);
        EVP_DigestUpdate(ctx, ids[order[i]], strlen(ids[order[i]]) + 1);
        EVP_DigestUpdate(ctx, h, 32);
    }
    EVP_DigestFinal_ex(ctx, h, NULL);
    EVP_MD_CTX_free(ctx);
    hex(h, 32, hx);
    snprintf(out, HASH_MAX, "sha256:%s", hx);
}

static void make_batches(void)
{
    for (size_t b = 0; b < NCHUNKS / BATCH; b++) {
        cJSON *body = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(body, "chunks");
        for (size_t i = b * BATCH; i < (b + 1) * BATCH; i++)
            cJSON_AddItemToArray(arr, chunk_json(i));
        batches[b] = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
    }
}

/* ---- HTTP on a raw socket: a publish we can walk away from -------------------------------- */

static int send_publish(const char *version)
{
    struct sockaddr_in a;
    char req[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)srv.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    n = snprintf(req, sizeof req,
                 "POST /v1/products/" PRODUCT "/versions/%s/publish HTTP/1.1\r\n"
                 "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n",
                 version, srv.admin_key);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads the whole response (the server closes); its status, or 0. */
static long read_status(int fd, int timeout_ms, char *body, size_t cap)
{
    size_t len = 0;
    long status = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t got;
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        got = read(fd, body + len, cap - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
        if (len == cap - 1)
            break;
    }
    body[len] = '\0';
    if (sscanf(body, "HTTP/1.%*d %ld", &status) != 1)
        status = 0;
    return status;
}

/* ---- checks after a restart --------------------------------------------------------------- */

/* Counts ".tmp-*" entries under versions/PRODUCT; *stray gets folders of versions that are
 * neither "ref" nor in published[] (names), i.e. served-never folders. */
static int count_tmp(const char *published_csv, int *stray)
{
    char dir[TH_PATH_MAX + 64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    *stray = 0;
    snprintf(dir, sizeof dir, "%s/versions/" PRODUCT, srv.data);
    d = opendir(dir);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char needle[300];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strncmp(e->d_name, ".tmp-", 5) == 0 && strcmp(e->d_name, DOTTED) != 0) {
            n++;
            continue;
        }
        snprintf(needle, sizeof needle, ",%s,", e->d_name);
        if (published_csv != NULL && strstr(published_csv, needle) == NULL) {
            fprintf(stderr, "stray version folder: %s\n", e->d_name);
            (*stray)++;
        }
    }
    closedir(d);
    return n;
}

static int run_verify(const char *version)
{
    pid_t pid = fork();
    int status = 0;

    if (pid == 0) {
        char out[TH_PATH_MAX + 32];
        int fd;
        snprintf(out, sizeof out, "%s/verify.out", srv.root);
        fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execl(srv.bin, srv.bin, "verify-version", "--data", srv.data, "--product", PRODUCT,
              "--version", version, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void print_verify_out(void)
{
    char path[TH_PATH_MAX + 32], buf[2048];
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "%s/verify.out", srv.root);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "verify-version said: %s\n", buf);
}

static int add_all(const char *version)
{
    if (th_version_create(&srv, PRODUCT, version) != 0)
        return -1;
    for (size_t b = 0; b < NCHUNKS / BATCH; b++) {
        th_resp r;
        char path[128];
        snprintf(path, sizeof path, "/v1/products/" PRODUCT "/versions/%s/chunks", version);
        th_request(&srv, "POST", path, srv.admin_key, batches[b], strlen(batches[b]), &r);
        int ok = TH_CHECK_STATUS(&r, 200) && CHECK_EQ_INT(th_num(r.json, "accepted", -1), BATCH);
        th_resp_release(&r);
        if (!ok)
            return -1;
    }
    return 0;
}

static int query_ok(const char *version)
{
    cJSON *q = cJSON_CreateObject(), *prods = cJSON_CreateArray();
    char rule[96];
    th_resp r;
    int ok;

    snprintf(rule, sizeof rule, PRODUCT "@%s", version);
    cJSON_AddItemToObject(q, "vector", th_vec_array(vecs[rnd_u64() % NCHUNKS], DIM));
    cJSON_AddNumberToObject(q, "k", K);
    cJSON_AddStringToObject(q, "purpose", "TREAT");
    cJSON_AddItemToArray(prods, cJSON_CreateString(rule));
    cJSON_AddItemToObject(q, "products", prods);
    th_req(&srv, "POST", consumer_key, q, &r, "/v1/query");
    ok = TH_CHECK_STATUS(&r, 200) &&
         CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "results")),
                      K) &&
         CHECK(cJSON_IsTrue(th_get(r.json, "complete")));
    th_resp_release(&r);
    cJSON_Delete(q);
    return ok;
}

/* GET the version: 0 draft, 1 published, -1 otherwise; checks chunks and hash. */
static int version_state(const char *version)
{
    th_resp r;
    int st = -1;
    const char *state;

    th_req(&srv, "GET", srv.admin_key, NULL, &r, "/v1/products/" PRODUCT "/versions/%s",
           version);
    if (TH_CHECK_STATUS(&r, 200)) {
        state = th_str(r.json, "state");
        CHECK_EQ_INT(th_num(r.json, "chunks", -1), NCHUNKS);
        if (state != NULL && strcmp(state, "draft") == 0) {
            st = 0;
        } else if (state != NULL && strcmp(state, "published") == 0) {
            st = 1;
            CHECK_EQ_STR(th_str(r.json, "content_hash"), expected_hash);
        } else {
            CHECK_FAIL("version %s is in state '%s' after the restart", version,
                       state ? state : "?");
        }
    }
    th_resp_release(&r);
    return st;
}

static int publish_now(const char *version, double *seconds)
{
    th_resp r;
    double t0 = now_s();
    int ok;

    th_req(&srv, "POST", srv.admin_key, NULL, &r, "/v1/products/" PRODUCT "/versions/%s/publish",
           version);
    if (seconds != NULL)
        *seconds = now_s() - t0;
    ok = TH_CHECK_STATUS(&r, 200) && CHECK_EQ_INT(th_num(r.json, "chunks", -1), NCHUNKS) &&
         CHECK_EQ_STR(th_str(r.json, "content_hash"), expected_hash);
    th_resp_release(&r);
    return ok;
}

/* The restarted server must have removed a folder renamed into place whose commit never
 * happened (made here by copying ref's folder under the draft's name). */
static void uncommitted_rename(const char *version, char *published_csv)
{
    char cmd[3 * TH_PATH_MAX];
    int stray = 0;

    snprintf(cmd, sizeof cmd, "cp -r '%s/versions/" PRODUCT "/ref' '%s/versions/" PRODUCT "/%s'",
             srv.data, srv.data, version);
    if (!CHECK(system(cmd) == 0))
        return;
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    if (th_restart(&srv) != 0)
        return;
    CHECK_EQ_INT(count_tmp(published_csv, &stray), 0);
    CHECKF(stray == 0, "the uncommitted folder of draft %s survived the restart", version);
    CHECK_EQ_INT(version_state(version), 0);
}

int main(int argc, char **argv)
{
    const char *bin = th_steward_bin(argc, argv);
    const char *it_env = getenv("STW_CRASH_ITERATIONS");
    unsigned long long seed = th_seed_from_env("STW_CRASH_SEED");
    long iterations = it_env != NULL ? atol(it_env) : 24;
    long kills = 0, drafts = 0, published = 0, failures = 0, tmp_seen = 0;
    double t_pub = 0;
    char published_csv[8192] = ",ref,", ref_hash[HASH_MAX];
    int made_rename = 0;
    th_resp r;

    rng = seed ? seed : 1;
    printf("crash: seed %llu (STW_CRASH_SEED), %ld iterations, %d chunks of dimension %d\n",
           seed, iterations, NCHUNKS, DIM);
    /* graphs even for these versions, so publish spends time in FAISS too */
    setenv("STEWARD_HNSW_MIN_ROWS", "1000", 1);
    make_chunks();
    make_batches();
    content_hash(expected_hash);

    if (th_start(&srv, bin) != 0)
        goto out;
    if (th_product_create(&srv, PRODUCT, "clinical", DIM, "cosine", "PSY", "source_system") != 0)
        goto out;
    consumer_key = th_principal_create(&srv, "rag", "consumer", "");
    if (consumer_key == NULL ||
        th_grant(&srv, "rag", PRODUCT, NULL, "TREAT", "V", "PSY", NULL) != 0)
        goto out;

    /* ref: the uninterrupted publish, against the independent hash */
    if (add_all("ref") != 0)
        goto out;
    th_req(&srv, "POST", srv.admin_key, NULL, &r, "/v1/products/" PRODUCT "/versions/ref/publish");
    TH_CHECK_STATUS(&r, 200);
    snprintf(ref_hash, sizeof ref_hash, "%s",
             th_str(r.json, "content_hash") ? th_str(r.json, "content_hash") : "");
    th_resp_release(&r);
    CHECKF(strcmp(ref_hash, expected_hash) == 0,
           "published content hash %s differs from the one computed here from the chunks, %s",
           ref_hash, expected_hash);
    CHECK_EQ_INT(run_verify("ref"), 0);

    /* a publish while other processes open the store (and run the start-up cleanup) */
    if (add_all("concurrent") != 0)
        goto out;
    {
        char body[4096];
        double t0 = now_s();
        int fd = send_publish("concurrent"), opens = 0;
        long st;
        CHECK(fd >= 0);
        while (now_s() - t0 < 120) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 0) > 0)
                break;
            CHECK_EQ_INT(run_verify("ref"), 0);
            opens++;
        }
        st = read_status(fd, 120000, body, sizeof body);
        close(fd);
        t_pub = now_s() - t0;
        CHECKF(st == 200, "publish while %d other processes opened the store: status %ld: %.300s",
               opens, st, body);
        printf("crash: publish of %d chunks took %.2f s while %d verify-version processes"
               " opened the store\n",
               NCHUNKS, t_pub, opens);
        strcat(published_csv, "concurrent,");
    }
    /* a published version whose name starts like a temporary folder survives a restart */
    {
        char path[TH_PATH_MAX + 64];
        struct stat sb;
        th_resp rr;
        if (th_version_create(&srv, PRODUCT, DOTTED) != 0)
            goto out;
        th_request(&srv, "POST", "/v1/products/" PRODUCT "/versions/" DOTTED "/chunks",
                   srv.admin_key, batches[0], strlen(batches[0]), &rr);
        TH_CHECK_STATUS(&rr, 200);
        th_resp_release(&rr);
        th_req(&srv, "POST", srv.admin_key, NULL, &rr,
               "/v1/products/" PRODUCT "/versions/" DOTTED "/publish");
        TH_CHECK_STATUS(&rr, 200);
        th_resp_release(&rr);
        if (th_restart(&srv) != 0)
            goto out;
        snprintf(path, sizeof path, "%s/versions/" PRODUCT "/" DOTTED, srv.data);
        CHECKF(stat(path, &sb) == 0, "the folder of published version %s was removed at start",
               DOTTED);
        CHECK_EQ_INT(run_verify(DOTTED), 0);
        strcat(published_csv, DOTTED ",");
    }
    /* the publish time without that competition */
    if (add_all("timing") != 0 || !publish_now("timing", &t_pub))
        goto out;
    strcat(published_csv, "timing,");
    printf("crash: uninterrupted publish: %.3f s\n", t_pub);

    for (long it = 0; it < iterations; it++) {
        char version[32];
        long before = check_failures;
        double delay;
        int fd, state, stray = 0, tmp;

        snprintf(version, sizeof version, "k%03ld", it);
        if (add_all(version) != 0)
            goto out;
        delay = rnd_unit() * 1.25 * t_pub;
        fd = send_publish(version);
        if (!CHECK(fd >= 0))
            goto out;
        sleep_s(delay);
        kill(srv.pid, SIGKILL);
        waitpid(srv.pid, NULL, 0);
        srv.pid = 0;
        close(fd);
        kills++;
        tmp = count_tmp(NULL, &stray);
        tmp_seen += tmp > 0;

        if (th_restart(&srv) != 0)
            goto out;
        CHECKF(count_tmp(NULL, &stray) == 0, "a .tmp- folder survived the restart");
        state = version_state(version);
        if (state == 0) {
            drafts++;
            if (!made_rename) { /* once: the rename-without-commit state, made by hand */
                made_rename = 1;
                uncommitted_rename(version, published_csv);
            }
            publish_now(version, NULL);
        } else if (state == 1) {
            published++;
        }
        if (strlen(published_csv) + strlen(version) + 2 < sizeof published_csv) {
            strcat(published_csv, version);
            strcat(published_csv, ",");
        }
        count_tmp(published_csv, &stray);
        CHECKF(stray == 0, "a folder of an unpublished version is present");
        query_ok(version);
        if (!CHECK_EQ_INT(run_verify(version), 0))
            print_verify_out();
        printf("crash: iteration %ld: killed %.3f s into publish (%.0f%% of T), %s on restart%s\n",
               it, delay, 100.0 * delay / t_pub,
               state == 0 ? "draft" : state == 1 ? "published" : "BROKEN",
               tmp > 0 ? ", a .tmp- folder was left and removed" : "");
        fflush(stdout);
        if (check_failures != before)
            failures++;
    }
out:
    printf("crash loop: kills=%ld draft=%ld published=%ld failures=%ld (kills that left a .tmp-"
           " folder: %ld)\n",
           kills, drafts, published, failures, tmp_seen);
    CHECKF(kills >= 20 || iterations < 20, "only %ld kills", kills);
    CHECK_EQ_INT(failures, 0);
    th_stop(&srv);
    for (size_t b = 0; b < NCHUNKS / BATCH; b++)
        cJSON_free(batches[b]);
    free(consumer_key);
    return check_summary("crash");
}
