/* test_openapi.c - docs/openapi.yaml against the server's route table.
 *
 * `test_openapi` (CTest "openapi", unit): reads the document as built into the binary
 * (src/openapi.h, the same bytes GET /openapi.yaml sends) and the route table (http.h:
 * http_route_count/http_route_at), and fails on any route the document lacks, any operation
 * the server does not register, and any disagreement about authentication (`security: []` in
 * the document <=> a route that needs no key). It first proves it can fail: a copy of the
 * document with one operation dropped, and one with an operation added, must both be caught.
 *
 * `test_openapi --served STEWARD_BIN` (CTest "openapi_served", http): runs the real server and
 * checks that GET /openapi.yaml, without a key, answers 200 application/yaml with exactly the
 * bytes of docs/openapi.yaml in the source tree (so a stale build is caught too).
 *
 * The document's layout is ours, so a line parser is enough: under `paths:` a path sits at two
 * spaces ("  /v1/query:"), an operation at four ("    post:"), and an operation that needs no
 * key says "      security: []" at six.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"
#include "harness.h"
#include "http.h"
#include "openapi.h"

#define MAX_OPS  128
#define PATH_CAP 128

struct op {
    char method[8]; /* upper case */
    char path[PATH_CAP];
    int noauth; /* the document says security: [] */
};

static const char *const http_methods[] = {"get",  "put",     "post",  "delete",
                                           "head", "options", "patch", "trace"};

/* Line [s, e) starts with exactly `indent` spaces followed by a non-space. */
static int indented(const char *s, const char *e, size_t indent)
{
    size_t i;

    if ((size_t)(e - s) <= indent)
        return 0;
    for (i = 0; i < indent; i++) {
        if (s[i] != ' ')
            return 0;
    }
    return s[indent] != ' ';
}

/* Trims trailing spaces and CR: the length of line [s, e) without them. */
static size_t trimmed_len(const char *s, const char *e)
{
    while (e > s && (e[-1] == ' ' || e[-1] == '\r'))
        e--;
    return (size_t)(e - s);
}

/* Parses the operations under `paths:`. Returns the count, or -1 (with a failed check) when the
 * document breaks the layout rules. */
static long doc_ops(const char *doc, size_t len, struct op *ops, size_t max)
{
    const char *p = doc, *end = doc + len;
    char path[PATH_CAP] = "";
    int in_paths = 0;
    size_t n = 0;

    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t l;

        if (e == NULL)
            e = end;
        l = trimmed_len(p, e);
        if (l > 0 && p[0] != ' ' && p[0] != '#') { /* a top-level key */
            in_paths = l == 6 && memcmp(p, "paths:", 6) == 0;
            path[0] = '\0';
        } else if (in_paths && indented(p, e, 2) && p[2] != '#') {
            if (p[2] != '/' || p[l - 1] != ':' || l - 3 >= PATH_CAP) {
                CHECK_FAIL("openapi.yaml: a path line must be '  /path:': %.*s", (int)l, p);
                return -1;
            }
            memcpy(path, p + 2, l - 3);
            path[l - 3] = '\0';
        } else if (in_paths && indented(p, e, 4) && p[l - 1] == ':') {
            size_t k, ml = l - 5;

            for (k = 0; k < sizeof http_methods / sizeof http_methods[0]; k++) {
                if (strlen(http_methods[k]) == ml && memcmp(p + 4, http_methods[k], ml) == 0)
                    break;
            }
            if (k < sizeof http_methods / sizeof http_methods[0]) {
                if (path[0] == '\0' || n == max) {
                    CHECK_FAIL("openapi.yaml: operation outside a path, or too many");
                    return -1;
                }
                for (k = 0; k < ml; k++)
                    ops[n].method[k] = (char)(p[4 + k] - 'a' + 'A');
                ops[n].method[ml] = '\0';
                snprintf(ops[n].path, sizeof ops[n].path, "%s", path);
                ops[n].noauth = 0;
                n++;
            }
        } else if (in_paths && n > 0 && indented(p, e, 6) && l == 18 &&
                   memcmp(p + 6, "security: []", 12) == 0) {
            ops[n - 1].noauth = 1;
        }
        p = e + 1;
    }
    return (long)n;
}

/* Compares the document's operations with the route table; returns the number of mismatches,
 * printing each when loud. */
static size_t compare(const struct op *ops, size_t n, int loud)
{
    size_t r, i, bad = 0, nroutes = http_route_count();
    int used[MAX_OPS] = {0};

    for (r = 0; r < nroutes; r++) {
        const char *method = NULL, *pattern = NULL;
        int auth = 1, found = 0;

        if (http_route_at(r, &method, &pattern, &auth) != 0) {
            bad++;
            continue;
        }
        for (i = 0; i < n; i++) {
            if (strcmp(ops[i].method, method) != 0 || strcmp(ops[i].path, pattern) != 0)
                continue;
            found = 1;
            used[i]++;
            if (ops[i].noauth == auth) { /* noauth must be the opposite of auth */
                bad++;
                if (loud)
                    CHECK_FAIL("%s %s: the server %s a key but the document says %s", method,
                               pattern, auth ? "needs" : "needs no",
                               ops[i].noauth ? "security: []" : "bearer");
            }
        }
        if (!found) {
            bad++;
            if (loud)
                CHECK_FAIL("route %s %s (src/http.c) is missing from docs/openapi.yaml", method,
                           pattern);
        }
    }
    for (i = 0; i < n; i++) {
        if (used[i] != 1) {
            bad++;
            if (loud)
                CHECK_FAIL("docs/openapi.yaml: %s %s %s", ops[i].method, ops[i].path,
                           used[i] == 0 ? "is not a route of the server"
                                        : "is listed more than once");
        }
    }
    return bad;
}

/* Copy of doc without the line that starts at offset `drop` (up to and including its '\n'),
 * or with `insert` inserted at that offset. Owned: free(). */
static char *doc_edit(const char *doc, size_t len, size_t at, int drop, const char *insert,
                      size_t *out_len)
{
    const char *nl = memchr(doc + at, '\n', len - at);
    size_t cut = drop ? (size_t)(nl - (doc + at)) + 1 : 0;
    size_t ins = insert != NULL ? strlen(insert) : 0;
    char *out = malloc(len - cut + ins + 1);

    if (out == NULL)
        return NULL;
    memcpy(out, doc, at);
    memcpy(out + at, insert != NULL ? insert : "", ins);
    memcpy(out + at + ins, doc + at + cut, len - at - cut);
    *out_len = len - cut + ins;
    out[*out_len] = '\0';
    return out;
}

static void test_self(const char *doc, size_t len)
{
    static struct op ops[MAX_OPS];
    const char *q = strstr(doc, "\n  /v1/query:\n    post:\n");
    const char *g = strstr(doc, "\n  /healthz:\n    get:\n");
    char *edited;
    size_t elen = 0;
    long n;

    if (!CHECK(q != NULL && g != NULL))
        return;
    /* Drop "    post:" of /v1/query: the route is then missing from the document. */
    edited = doc_edit(doc, len, (size_t)(q - doc) + strlen("\n  /v1/query:\n"), 1, NULL, &elen);
    if (!CHECK(edited != NULL))
        return;
    n = doc_ops(edited, elen, ops, MAX_OPS);
    CHECK(n > 0 && compare(ops, (size_t)n, 0) == 1);
    free(edited);
    /* Add "    put:" to /healthz: the document then lists an operation the server lacks. */
    edited = doc_edit(doc, len, (size_t)(g - doc) + strlen("\n  /healthz:\n"), 0,
                      "    put:\n      summary: not a route\n", &elen);
    if (!CHECK(edited != NULL))
        return;
    n = doc_ops(edited, elen, ops, MAX_OPS);
    CHECK(n > 0 && compare(ops, (size_t)n, 0) == 1);
    free(edited);
    /* Drop "      security: []" of /healthz: authentication then disagrees. */
    g = strstr(doc, "\n  /healthz:\n");
    g = strstr(g, "\n      security: []\n");
    if (!CHECK(g != NULL))
        return;
    edited = doc_edit(doc, len, (size_t)(g - doc) + 1, 1, NULL, &elen);
    if (!CHECK(edited != NULL))
        return;
    n = doc_ops(edited, elen, ops, MAX_OPS);
    CHECK(n > 0 && compare(ops, (size_t)n, 0) == 1);
    free(edited);
}

static void test_table(const char *doc, size_t len)
{
    static struct op ops[MAX_OPS];
    long n = doc_ops(doc, len, ops, MAX_OPS);

    CHECK(strncmp(doc, "openapi: 3.0.", 13) == 0);
    CHECK(http_route_count() >= 20); /* guards against a parser that finds nothing */
    if (!CHECK_EQ_INT(n, (long)http_route_count()))
        fprintf(stderr, "docs/openapi.yaml lists %ld operations, src/http.c %zu routes\n", n,
                http_route_count());
    if (n > 0)
        CHECK_EQ_INT(compare(ops, (size_t)n, 1), 0);
}

/* ---- --served: the live document ----------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t nmemb, void *ctx)
{
    FILE *f = ctx;

    return fwrite(data, size, nmemb, f);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        if (buf != NULL) {
            buf[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static void test_served(const char *bin)
{
    th_server s;
    th_resp r;
    size_t flen = 0, blen = 0;
    char *file = read_file(STW_SOURCE_DIR "/docs/openapi.yaml", &flen);
    char *body = NULL;
    FILE *mem = NULL;
    CURL *c = NULL;
    char url[128];
    char *ctype = NULL;
    long status = 0;

    memset(&r, 0, sizeof r);
    if (!CHECK(file != NULL) || th_start(&s, bin) != 0) {
        free(file);
        return;
    }
    /* Through the harness: no key, 200, the bytes of the source file. */
    th_request(&s, "GET", "/openapi.yaml", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.len, flen);
    CHECKF(r.len == flen && memcmp(r.body, file, flen) == 0,
           "GET /openapi.yaml differs from docs/openapi.yaml (rebuild?)");
    th_resp_release(&r);
    /* A key is ignored, not required. */
    th_request(&s, "GET", "/openapi.yaml", s.admin_key, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    th_resp_release(&r);
    th_request(&s, "POST", "/openapi.yaml", NULL, "{}", 2, &r);
    TH_CHECK_ERROR(&r, 405, "method_not_allowed", NULL);
    th_resp_release(&r);

    /* The Content-Type, which the harness does not keep. */
    snprintf(url, sizeof url, "%s/openapi.yaml", s.base);
    mem = open_memstream(&body, &blen);
    c = curl_easy_init();
    if (CHECK(mem != NULL && c != NULL)) {
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
        if (CHECK(curl_easy_perform(c) == CURLE_OK)) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
            CHECK_EQ_INT(status, 200);
            CHECK(ctype != NULL && strncasecmp(ctype, "application/yaml", 16) == 0);
        }
        /* HEAD is served as GET, without the body. */
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        status = 0;
        if (CHECK(curl_easy_perform(c) == CURLE_OK)) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            CHECK_EQ_INT(status, 200);
        }
    }
    if (c != NULL)
        curl_easy_cleanup(c);
    if (mem != NULL)
        fclose(mem);
    free(body);
    free(file);
    th_stop(&s);
}

int main(int argc, char **argv)
{
    const char *doc = (const char *)openapi_yaml;

    if (argc > 2 && strcmp(argv[1], "--served") == 0) {
        test_served(argv[2]);
        return check_summary("openapi_served");
    }
    CHECK_EQ_INT(strlen(doc), openapi_yaml_len); /* no NUL inside, terminated */
    test_self(doc, openapi_yaml_len);
    test_table(doc, openapi_yaml_len);
    return check_summary("openapi");
}
