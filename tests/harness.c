/* harness.c - start the real steward binary, HTTP client over libcurl, setup helpers.
 * See harness.h for the contract. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#ifndef STEWARD_BIN
#define STEWARD_BIN "steward"
#endif

#define TH_START_TIMEOUT_MS 60000 /* ASan builds start slowly on a loaded 2-core box */
#define TH_STOP_TIMEOUT_MS  20000
#define TH_HTTP_TIMEOUT_S   300L

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

const char *th_steward_bin(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '\0')
        return argv[1];
    return STEWARD_BIN;
}

unsigned long long th_seed_from_env(const char *env_name)
{
    const char *e = env_name ? getenv(env_name) : NULL;
    struct timespec ts;

    if (e != NULL && *e != '\0')
        return strtoull(e, NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((unsigned long long)ts.tv_sec * 1000003ULL) ^ (unsigned long long)ts.tv_nsec ^
           ((unsigned long long)getpid() << 32);
}

/* Reads a whole small file into a NUL-terminated buffer (owned), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - len < 4097) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static void print_log_tail(const th_server *s, const char *name, size_t max_lines)
{
    char path[TH_PATH_MAX + 32];
    char *text;
    size_t len, lines = 0;
    const char *p;

    snprintf(path, sizeof path, "%s/%s", s->root, name);
    text = slurp(path);
    if (text == NULL)
        return;
    len = strlen(text);
    p = text + len;
    while (p > text) {
        p--;
        if (*p == '\n' && p + 1 < text + len && ++lines > max_lines) {
            p++;
            break;
        }
    }
    fprintf(stderr, "---- tail of %s ----\n%s---- end of %s ----\n", path, p, name);
    free(text);
}

/* fork+exec bin with args; stdout to out_fd (or the file out_path), stderr appended to
 * err_path; fsize_limit non-zero: RLIMIT_FSIZE (soft) of that many bytes, SIGXFSZ ignored.
 * Returns the pid, or -1. */
static pid_t spawn(const char *bin, char *const argv[], int out_fd, const char *out_path,
                   const char *err_path, unsigned long long fsize_limit)
{
    pid_t pid = fork();

    if (pid != 0)
        return pid;
    /* child */
    if (out_path != NULL)
        out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err_fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (out_fd < 0 || err_fd < 0)
        _exit(126);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    if (out_fd > STDERR_FILENO)
        close(out_fd);
    if (err_fd > STDERR_FILENO)
        close(err_fd);
    if (fsize_limit > 0) {
        struct rlimit lim;

        signal(SIGXFSZ, SIG_IGN); /* survives exec: EFBIG instead of the signal */
        if (getrlimit(RLIMIT_FSIZE, &lim) != 0)
            _exit(126);
        lim.rlim_cur = (rlim_t)fsize_limit;
        if (lim.rlim_max != RLIM_INFINITY && lim.rlim_cur > lim.rlim_max)
            lim.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
            _exit(126);
    }
    execv(bin, argv);
    fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
    _exit(127);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int run_init(th_server *s)
{
    int fds[2];
    char errlog[TH_PATH_MAX + 32];
    char out[4096];
    size_t len = 0;
    int status = 0;
    pid_t pid;
    cJSON *json = NULL;
    int rc = -1;

    snprintf(errlog, sizeof errlog, "%s/init.log", s->root);
    if (pipe(fds) != 0)
        return CHECK_FAIL("pipe: %s", strerror(errno)) - 1;
    char *const argv[] = {s->bin, "init", "--data", s->data, NULL};
    pid = spawn(s->bin, argv, fds[1], NULL, errlog, 0);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return CHECK_FAIL("fork: %s", strerror(errno)) - 1;
    }
    for (;;) {
        ssize_t got = read(fds[0], out + len, sizeof out - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
        if (len == sizeof out - 1)
            break;
    }
    close(fds[0]);
    out[len] = '\0';
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "`%s init --data %s` exited with status 0x%x; stdout: %s", s->bin, s->data, status,
                out)) {
        print_log_tail(s, "init.log", 40);
        return -1;
    }
    /* The first line is {"principal":"admin","api_key":"..."}. */
    char *nl = strchr(out, '\n');
    if (nl != NULL)
        *nl = '\0';
    json = cJSON_Parse(out);
    if (!CHECKF(json != NULL, "init printed no JSON line: '%s'", out))
        goto done;
    if (!CHECK_EQ_STR(th_str(json, "principal"), "admin"))
        goto done;
    const char *key = th_str(json, "api_key");
    if (!CHECKF(key != NULL && *key != '\0' && strlen(key) < sizeof s->admin_key,
                "init printed no usable api_key: '%s'", out))
        goto done;
    snprintf(s->admin_key, sizeof s->admin_key, "%s", key);
    rc = 0;
done:
    cJSON_Delete(json);
    return rc;
}

/* Reaps the server; checks it ended by SIGTERM or with exit status 0. */
static void stop_server(th_server *s)
{
    int status = 0;
    long deadline;
    pid_t got = 0;

    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    deadline = now_ms() + TH_STOP_TIMEOUT_MS;
    while (now_ms() < deadline) {
        got = waitpid(s->pid, &status, WNOHANG);
        if (got != 0)
            break;
        sleep_ms(10);
    }
    if (got == 0) {
        CHECK_FAIL("steward serve (pid %d) did not exit within %d ms of SIGTERM; killing it",
                   (int)s->pid, TH_STOP_TIMEOUT_MS);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    } else if (got > 0) {
        int clean = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                    (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
        if (!CHECKF(clean, "steward serve ended badly after SIGTERM: %s %d",
                    WIFEXITED(status) ? "exit status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)))
            print_log_tail(s, "server.log", 60);
    }
    s->pid = 0;
    s->port = 0;
    s->base[0] = '\0';
}

static int start_server(th_server *s)
{
    char outp[TH_PATH_MAX + 32], errp[TH_PATH_MAX + 32];
    long deadline;
    char *const argv[] = {s->bin, "serve", "--data", s->data, "--listen", "127.0.0.1:0", NULL};

    snprintf(outp, sizeof outp, "%s/server.out", s->root);
    snprintf(errp, sizeof errp, "%s/server.log", s->root);
    /* Truncate here, not only in the child: the parent must never read the line a previous
     * server (before th_restart) left behind. */
    {
        int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            close(fd);
    }
    s->pid = spawn(s->bin, argv, -1, outp, errp, s->fsize_limit);
    if (s->pid < 0) {
        s->pid = 0;
        return CHECK_FAIL("fork: %s", strerror(errno)) - 1;
    }
    deadline = now_ms() + TH_START_TIMEOUT_MS;
    while (now_ms() < deadline) {
        int status;
        char *text = slurp(outp);
        const char *p = text ? strstr(text, "listening on http://127.0.0.1:") : NULL;
        if (p != NULL && strchr(p, '\n') != NULL) {
            int port = atoi(p + strlen("listening on http://127.0.0.1:"));
            free(text);
            if (!CHECKF(port > 0 && port < 65536, "bad port in the listening line"))
                return -1;
            s->port = port;
            snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", port);
            return 0;
        }
        free(text);
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            CHECK_FAIL("steward serve exited (status 0x%x) before printing its listening line",
                       status);
            print_log_tail(s, "server.log", 60);
            print_log_tail(s, "server.out", 20);
            return -1;
        }
        sleep_ms(20);
    }
    CHECK_FAIL("steward serve printed no 'listening on http://127.0.0.1:PORT' line within %d ms",
               TH_START_TIMEOUT_MS);
    print_log_tail(s, "server.out", 20);
    print_log_tail(s, "server.log", 60);
    return -1;
}

int th_start(th_server *s, const char *bin)
{
    const char *tmp = getenv("TMPDIR");

    memset(s, 0, sizeof *s);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return CHECK_FAIL("curl_global_init failed") - 1;
    s->curl = curl_easy_init();
    if (!CHECK(s->curl != NULL))
        return -1;
    snprintf(s->bin, sizeof s->bin, "%s", bin);
    if (!CHECKF(access(s->bin, X_OK) == 0, "steward binary '%s' is not executable: %s", s->bin,
                strerror(errno)))
        return -1;
    snprintf(s->root, sizeof s->root, "%s/steward-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!CHECKF(mkdtemp(s->root) != NULL, "mkdtemp: %s", strerror(errno))) {
        s->root[0] = '\0';
        return -1;
    }
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    if (run_init(s) != 0)
        return -1;
    return start_server(s);
}

int th_restart(th_server *s)
{
    stop_server(s);
    return start_server(s);
}

void th_halt(th_server *s)
{
    stop_server(s);
}

int th_resume(th_server *s)
{
    return s->pid > 0 ? 0 : start_server(s);
}

int th_run(th_server *s, char *const args[], char **out)
{
    char *argv[32];
    char outp[TH_PATH_MAX + 32], errp[TH_PATH_MAX + 32];
    int status = 0, n = 0;
    pid_t pid;

    argv[n++] = s->bin;
    while (args[n - 1] != NULL && n < 31) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    snprintf(outp, sizeof outp, "%s/cli.out", s->root);
    snprintf(errp, sizeof errp, "%s/cli.log", s->root);
    pid = spawn(s->bin, argv, -1, outp, errp, 0);
    if (pid < 0)
        return CHECK_FAIL("fork: %s", strerror(errno)) - 1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (out != NULL)
        *out = slurp(outp);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void th_stop(th_server *s)
{
    stop_server(s);
    if (check_failures > 0 && s->root[0] != '\0')
        print_log_tail(s, "server.log", 40);
    if (s->root[0] != '\0') {
        const char *keep = getenv("STW_KEEP_DATA");
        if (keep != NULL && strcmp(keep, "1") == 0)
            fprintf(stderr, "kept test data in %s\n", s->root);
        else
            nftw(s->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        s->root[0] = '\0';
    }
    if (s->curl != NULL) {
        curl_easy_cleanup(s->curl);
        s->curl = NULL;
        curl_global_cleanup();
    }
}

/* ---- HTTP ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct buf *b = userp;
    size_t n = size * nmemb;

    if (b->cap - b->len < n + 1) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap - b->len < n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

struct upload {
    const char *p;
    size_t left;
};

static size_t on_read(char *dst, size_t size, size_t nmemb, void *userp)
{
    struct upload *u = userp;
    size_t n = size * nmemb;

    if (n > 65536)
        n = 65536;
    if (n > u->left)
        n = u->left;
    memcpy(dst, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

static long perform(th_server *s, const char *method, const char *path, const char *key,
                    const char *body, size_t body_len, int chunked, th_resp *r);

long th_request(th_server *s, const char *method, const char *path, const char *key,
                const char *body, size_t body_len, th_resp *r)
{
    return perform(s, method, path, key, body, body_len, 0, r);
}

long th_request_chunked(th_server *s, const char *path, const char *key, const char *body,
                        size_t body_len, th_resp *r)
{
    return perform(s, "POST", path, key, body, body_len, 1, r);
}

static long perform(th_server *s, const char *method, const char *path, const char *key,
                    const char *body, size_t body_len, int chunked, th_resp *r)
{
    struct upload up = {body, body_len};
    CURL *c = s->curl;
    struct curl_slist *hdrs = NULL;
    struct buf b = {NULL, 0, 0};
    char url[TH_PATH_MAX * 2];
    char auth[TH_KEY_MAX + 32];
    CURLcode cc;

    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "%s%s", s->base, path);
    curl_easy_reset(c); /* keeps live connections */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, TH_HTTP_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body != NULL)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (key != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (chunked)
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    if (hdrs != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (chunked) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
    } else if (strcmp(method, "GET") == 0 && body == NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
    }
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (cc != CURLE_OK && r->status == 0)
        fprintf(stderr, "%s %s: curl error: %s\n", method, path, curl_easy_strerror(cc));
    curl_slist_free_all(hdrs);
    if (b.p == NULL) {
        b.p = malloc(1);
        if (b.p != NULL)
            b.p[0] = '\0';
    }
    r->body = b.p;
    r->len = b.len;
    if (b.len > 0)
        r->json = cJSON_ParseWithLength(b.p, b.len);
    return r->status;
}

long th_req(th_server *s, const char *method, const char *key, const cJSON *body, th_resp *r,
            const char *path_fmt, ...)
{
    char path[TH_PATH_MAX];
    char *text = NULL;
    va_list ap;
    long st;

    va_start(ap, path_fmt);
    vsnprintf(path, sizeof path, path_fmt, ap);
    va_end(ap);
    if (body != NULL)
        text = cJSON_PrintUnformatted(body);
    st = th_request(s, method, path, key, text, text ? strlen(text) : 0, r);
    cJSON_free(text);
    return st;
}

void th_resp_release(th_resp *r)
{
    if (r == NULL)
        return;
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static const char *body_excerpt(const th_resp *r)
{
    return r->body ? r->body : "(none)";
}

int th_check_status(const char *file, int line, const th_resp *r, long status)
{
    if (r->status == status) {
        check_count++;
        return 1;
    }
    return check_failf(file, line, "expected HTTP %ld, got %ld; body: %.600s", status, r->status,
                       body_excerpt(r));
}

static int is_snake(const char *s)
{
    if (s == NULL || !islower((unsigned char)s[0]))
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

int th_check_error(const char *file, int line, const th_resp *r, long status, const char *code,
                   const char *contains)
{
    int ok = 1;
    const char *c = th_str(r->json, "error.code");
    const char *m = th_str(r->json, "error.message");

    ok &= th_check_status(file, line, r, status);
    ok &= check_boolf(file, line, "error.code is snake_case", is_snake(c),
                      "error.code '%s' in body %.400s", c ? c : "(missing)", body_excerpt(r));
    if (code != NULL)
        ok &= check_eq_str(file, line, "error.code", code, c, code);
    ok &= check_boolf(file, line, "error.message non-empty", m != NULL && *m != '\0', "body %.400s",
                      body_excerpt(r));
    if (contains != NULL && m != NULL)
        ok &= check_boolf(file, line, "error.message names it", strstr(m, contains) != NULL,
                          "message '%s' does not contain '%s'", m, contains);
    return ok;
}

/* ---- JSON helpers ---- */

const cJSON *th_get(const cJSON *json, const char *dotted)
{
    char part[128];
    const char *p = dotted;

    while (json != NULL && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        json = cJSON_IsObject(json) ? cJSON_GetObjectItemCaseSensitive(json, part) : NULL;
        p += n;
        if (*p == '.')
            p++;
    }
    return json;
}

const char *th_str(const cJSON *json, const char *dotted)
{
    const cJSON *v = th_get(json, dotted);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double th_num(const cJSON *json, const char *dotted, double dflt)
{
    const cJSON *v = th_get(json, dotted);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

cJSON *th_str_array(const char *csv)
{
    cJSON *arr = cJSON_CreateArray();
    const char *p = csv;

    if (arr == NULL || csv == NULL || *csv == '\0')
        return arr;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[256];
        if (n >= sizeof item)
            n = sizeof item - 1;
        memcpy(item, p, n);
        item[n] = '\0';
        cJSON_AddItemToArray(arr, cJSON_CreateString(item));
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return arr;
}

cJSON *th_vec_array(const float *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();

    /* cJSON prints a double with enough digits to parse back to the same double, and a float
     * widened to double parses back (and narrows) to the same float. */
    for (size_t i = 0; arr != NULL && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)v[i]));
    return arr;
}

/* ---- setup helpers ---- */

char *th_principal_create(th_server *s, const char *id, const char *roles_csv,
                          const char *domains_csv)
{
    cJSON *b = cJSON_CreateObject();
    th_resp r;
    char *key = NULL;

    cJSON_AddStringToObject(b, "id", id);
    cJSON_AddItemToObject(b, "roles", th_str_array(roles_csv));
    cJSON_AddItemToObject(b, "domains", th_str_array(domains_csv ? domains_csv : ""));
    th_req(s, "POST", s->admin_key, b, &r, "/v1/principals");
    if (TH_CHECK_STATUS(&r, 201)) {
        const char *k = th_str(r.json, "api_key");
        if (CHECKF(k != NULL && *k, "no api_key for principal %s: %s", id, r.body))
            key = strdup(k);
        CHECK_EQ_STR(th_str(r.json, "id"), id);
    }
    th_resp_release(&r);
    cJSON_Delete(b);
    return key;
}

int th_product_create(th_server *s, const char *name, const char *domain, size_t dim,
                      const char *metric, const char *compartments_csv,
                      const char *prov_required_csv)
{
    cJSON *b = cJSON_CreateObject();
    cJSON *c = cJSON_CreateObject();
    th_resp r;
    int rc;

    cJSON_AddStringToObject(b, "name", name);
    cJSON_AddStringToObject(b, "domain", domain);
    cJSON_AddStringToObject(b, "description", "created by the steward test suite");
    cJSON_AddStringToObject(b, "owner", "admin");
    cJSON_AddStringToObject(c, "embedding_model", "test-random");
    cJSON_AddNumberToObject(c, "dimension", (double)dim);
    cJSON_AddStringToObject(c, "metric", metric);
    cJSON_AddItemToObject(c, "compartments", th_str_array(compartments_csv));
    cJSON_AddItemToObject(c, "provenance_required", th_str_array(prov_required_csv));
    cJSON_AddItemToObject(b, "contract", c);
    th_req(s, "POST", s->admin_key, b, &r, "/v1/products");
    rc = TH_CHECK_STATUS(&r, 201) ? 0 : -1;
    th_resp_release(&r);
    cJSON_Delete(b);
    return rc;
}

int th_version_create(th_server *s, const char *product, const char *version)
{
    cJSON *b = cJSON_CreateObject();
    th_resp r;
    int rc;

    cJSON_AddStringToObject(b, "version", version);
    th_req(s, "POST", s->admin_key, b, &r, "/v1/products/%s/versions", product);
    rc = TH_CHECK_STATUS(&r, 201) ? 0 : -1;
    if (rc == 0)
        CHECK_EQ_STR(th_str(r.json, "state"), "draft");
    th_resp_release(&r);
    cJSON_Delete(b);
    return rc;
}

int th_chunks_add(th_server *s, const char *product, const char *version, const cJSON *chunks,
                  long *accepted, long *unchanged)
{
    cJSON *b = cJSON_CreateObject();
    th_resp r;
    int rc;

    /* Borrow `chunks` into the body without copying, then detach it again. */
    cJSON_AddItemReferenceToObject(b, "chunks", (cJSON *)chunks);
    th_req(s, "POST", s->admin_key, b, &r, "/v1/products/%s/versions/%s/chunks", product, version);
    rc = TH_CHECK_STATUS(&r, 200) ? 0 : -1;
    if (accepted != NULL)
        *accepted = (long)th_num(r.json, "accepted", -1);
    if (unchanged != NULL)
        *unchanged = (long)th_num(r.json, "unchanged", -1);
    th_resp_release(&r);
    cJSON_Delete(b);
    return rc;
}

int th_publish(th_server *s, const char *product, const char *version, char *published_at_out)
{
    th_resp r;
    int rc;

    th_req(s, "POST", s->admin_key, NULL, &r, "/v1/products/%s/versions/%s/publish", product,
           version);
    rc = TH_CHECK_STATUS(&r, 200) ? 0 : -1;
    if (rc == 0) {
        const char *at = th_str(r.json, "published_at");
        CHECK_EQ_STR(th_str(r.json, "state"), "published");
        if (published_at_out != NULL)
            snprintf(published_at_out, 40, "%s", at ? at : "");
    }
    th_resp_release(&r);
    return rc;
}

int th_retire(th_server *s, const char *product, const char *version)
{
    th_resp r;
    int rc;

    th_req(s, "POST", s->admin_key, NULL, &r, "/v1/products/%s/versions/%s/retire", product,
           version);
    rc = TH_CHECK_STATUS(&r, 200) ? 0 : -1;
    if (rc == 0)
        CHECK_EQ_STR(th_str(r.json, "state"), "retired");
    th_resp_release(&r);
    return rc;
}

int th_grant(th_server *s, const char *principal, const char *product, const char *domain,
             const char *purposes_csv, const char *clearance, const char *compartments_csv,
             char *id_out)
{
    cJSON *b = cJSON_CreateObject();
    th_resp r;
    int rc;

    cJSON_AddStringToObject(b, "principal", principal);
    if (product != NULL)
        cJSON_AddStringToObject(b, "product", product);
    if (domain != NULL)
        cJSON_AddStringToObject(b, "domain", domain);
    cJSON_AddItemToObject(b, "purposes", th_str_array(purposes_csv));
    cJSON_AddStringToObject(b, "clearance", clearance);
    cJSON_AddItemToObject(b, "compartments", th_str_array(compartments_csv));
    th_req(s, "POST", s->admin_key, b, &r, "/v1/grants");
    rc = TH_CHECK_STATUS(&r, 201) ? 0 : -1;
    if (rc == 0) {
        const char *id = th_str(r.json, "id");
        CHECKF(id != NULL && *id, "grant response has no id: %s", r.body);
        CHECKF(cJSON_IsNumber(th_get(r.json, "policy_version")),
               "grant response has no policy_version: %s", r.body);
        if (id_out != NULL)
            snprintf(id_out, 128, "%s", id ? id : "");
    }
    th_resp_release(&r);
    cJSON_Delete(b);
    return rc;
}

int th_suppress(th_server *s, const char *product, const char *kind, const char *value)
{
    cJSON *b = cJSON_CreateObject();
    th_resp r;
    int rc;

    cJSON_AddStringToObject(b, "product", product);
    cJSON_AddStringToObject(b, kind, value);
    cJSON_AddStringToObject(b, "reason", "test suite");
    th_req(s, "POST", s->admin_key, b, &r, "/v1/suppressions");
    rc = TH_CHECK_STATUS(&r, 201) ? 0 : -1;
    th_resp_release(&r);
    cJSON_Delete(b);
    return rc;
}

cJSON *th_chunk_new(const char *id, const char *text, const float *vec, size_t dim,
                    const char *conf, const char *compartments_csv, const char *source_system,
                    const char *document_id, const char *section, const char *subject,
                    const char *created_at)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *prov = cJSON_CreateObject();

    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "text", text);
    cJSON_AddItemToObject(c, "vector", th_vec_array(vec, dim));
    if (conf != NULL) {
        cJSON *labels = cJSON_CreateObject();
        cJSON_AddStringToObject(labels, "confidentiality", conf);
        cJSON_AddItemToObject(labels, "compartments", th_str_array(compartments_csv));
        cJSON_AddItemToObject(c, "labels", labels);
    }
    if (source_system != NULL)
        cJSON_AddStringToObject(prov, "source_system", source_system);
    if (document_id != NULL) {
        cJSON_AddStringToObject(prov, "record_id", document_id);
        cJSON_AddStringToObject(prov, "document_id", document_id);
    }
    if (section != NULL)
        cJSON_AddStringToObject(prov, "section", section);
    if (subject != NULL)
        cJSON_AddStringToObject(prov, "subject", subject);
    if (created_at != NULL)
        cJSON_AddStringToObject(prov, "created_at", created_at);
    cJSON_AddItemToObject(c, "provenance", prov);
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "origin", "steward-tests");
    cJSON_AddItemToObject(c, "metadata", meta);
    return c;
}

/* ---- brute force ---- */

double th_score(const char *metric, const float *q, const float *v, size_t dim)
{
    double dot = 0, qq = 0, vv = 0, l2 = 0;

    for (size_t i = 0; i < dim; i++) {
        double a = q[i], b = v[i];
        dot += a * b;
        qq += a * a;
        vv += b * b;
        l2 += (a - b) * (a - b);
    }
    if (strcmp(metric, "ip") == 0)
        return dot;
    if (strcmp(metric, "l2") == 0)
        return sqrt(l2);
    return (qq > 0 && vv > 0) ? dot / (sqrt(qq) * sqrt(vv)) : 0.0;
}

int th_better(const char *metric, double a, double b)
{
    return strcmp(metric, "l2") == 0 ? a < b : a > b;
}

int th_is_sha256(const char *s, int allow_bare)
{
    if (s == NULL)
        return 0;
    if (strncmp(s, "sha256:", 7) == 0)
        s += 7;
    else if (!allow_bare)
        return 0;
    if (strlen(s) != 64)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
            return 0;
    return 1;
}
