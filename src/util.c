/* util.c - enum names, RFC 3339 times, name rules, hashing, random ids, canonical JSON.
 * Pure helpers with no state; everything here is safe from any thread. */
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static const char *const purpose_names[STW_PURPOSE_COUNT] = {
    "TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PUBHLTH", "HMARKT", "COVERAGE", "HLEGAL",
};
static const char *const conf_names[] = {"U", "L", "M", "N", "R", "V"};
static const char *const metric_names[] = {"cosine", "ip", "l2"};
static const char *const role_names[] = {"admin", "owner", "consumer", "auditor"};
static const char *const state_names[] = {"draft", "published", "retired"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int parse_in(const char *s, const char *const *names, size_t n)
{
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

int stw_purpose_parse(const char *s)
{
    return parse_in(s, purpose_names, COUNT(purpose_names));
}

const char *stw_purpose_name(int p)
{
    return (p >= 0 && (size_t)p < COUNT(purpose_names)) ? purpose_names[p] : NULL;
}

int stw_conf_parse(const char *s)
{
    return parse_in(s, conf_names, COUNT(conf_names));
}

const char *stw_conf_name(int c)
{
    return (c >= 0 && (size_t)c < COUNT(conf_names)) ? conf_names[c] : NULL;
}

int stw_metric_parse(const char *s)
{
    return parse_in(s, metric_names, COUNT(metric_names));
}

const char *stw_metric_name(int m)
{
    return (m >= 0 && (size_t)m < COUNT(metric_names)) ? metric_names[m] : NULL;
}

int stw_role_parse(const char *s)
{
    int i = parse_in(s, role_names, COUNT(role_names));
    return i < 0 ? -1 : (int)(1u << i);
}

const char *stw_role_name(unsigned role_bit)
{
    for (size_t i = 0; i < COUNT(role_names); i++)
        if (role_bit == (1u << i))
            return role_names[i];
    return NULL;
}

const char *stw_state_name(int s)
{
    return (s >= 0 && (size_t)s < COUNT(state_names)) ? state_names[s] : NULL;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int stw_time_parse(const char *s, int64_t *ms_out)
{
    int y, mo, d, h, mi, sec, frac_ms = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 19;
    int64_t off_min = 0;

    if (s == NULL || strlen(s) < 20)
        return -1;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -1;
    if (s[i] == '.') {
        int scale = 100;
        i++;
        if (!isdigit((unsigned char)s[i]))
            return -1;
        while (isdigit((unsigned char)s[i])) {
            frac_ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (digits(s + i + 1, 2, &oh) || s[i + 3] != ':' || digits(s + i + 4, 2, &om) ||
            oh > 23 || om > 59)
            return -1;
        off_min = (int64_t)oh * 60 + om;
        if (s[i] == '-')
            off_min = -off_min;
        i += 6;
    } else {
        return -1;
    }
    if (s[i] != '\0')
        return -1;
    if (sec == 60)
        sec = 59; /* leap second: clamp */
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec - off_min * 60;
    *ms_out = secs * 1000 + frac_ms;
    return 0;
}

void stw_time_format(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int milli = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;

    char buf[96];

    gmtime_r(&secs, &tm);
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
    memcpy(out, buf, 31);
    out[31] = '\0';
}

static int name_rule(const char *s, const char *extra_chars)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n < 1 || n > STW_NAME_MAX)
        return 0;
    if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '-' || (c != '\0' && strchr(extra_chars, c))))
            return 0;
    }
    return 1;
}

int stw_valid_name(const char *s)
{
    return name_rule(s, "");
}

int stw_valid_principal_name(const char *s)
{
    return name_rule(s, "._");
}

int stw_valid_version_name(const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n < 1 || n > STW_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    /* "." and ".." would be path components of versions/<product>/<version>/ */
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    unsigned int outlen = SHA256_LEN;
    EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL);
}

void util_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[bytes[i] >> 4];
        out[2 * i + 1] = hexd[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void util_hash_str(const unsigned char digest[SHA256_LEN], char out[STW_HASH_STR_MAX])
{
    memcpy(out, "sha256:", 7);
    util_hex(digest, SHA256_LEN, out + 7);
}

int util_random_id(const char *prefix, size_t nbytes, char *out, size_t cap)
{
    unsigned char buf[64];
    size_t plen = strlen(prefix);

    if (nbytes > sizeof buf || plen + 2 * nbytes + 1 > cap)
        return -1;
    if (RAND_bytes(buf, (int)nbytes) != 1)
        return -1;
    memcpy(out, prefix, plen);
    util_hex(buf, nbytes, out + plen);
    return 0;
}

int util_time_id(const char *prefix, char *out, size_t cap)
{
    unsigned char buf[16];
    uint64_t ms = (uint64_t)util_now_ms();
    size_t plen = strlen(prefix);

    if (plen + 2 * sizeof buf + 1 > cap)
        return -1;
    for (int i = 5; i >= 0; i--) { /* 48 bits of milliseconds, big-endian: ids sort by time */
        buf[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
    if (RAND_bytes(buf + 6, (int)sizeof buf - 6) != 1)
        return -1;
    memcpy(out, prefix, plen);
    util_hex(buf, sizeof buf, out + plen);
    return 0;
}

static int cmp_items(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* Sort every object's members by key, recursively. 0 on success. */
static int canonicalize(cJSON *node)
{
    cJSON *child;
    size_t n = 0, i = 0;
    cJSON **items;

    if (cJSON_IsArray(node)) {
        cJSON_ArrayForEach(child, node)
        {
            if (canonicalize(child) != 0)
                return -1;
        }
        return 0;
    }
    if (!cJSON_IsObject(node))
        return 0;
    cJSON_ArrayForEach(child, node) n++;
    if (n == 0)
        return 0;
    items = malloc(n * sizeof *items);
    if (items == NULL)
        return -1;
    cJSON_ArrayForEach(child, node) items[i++] = child;
    qsort(items, n, sizeof *items, cmp_items);
    /* relink the children in sorted order */
    for (i = 0; i < n; i++) {
        items[i]->prev = i > 0 ? items[i - 1] : items[n - 1];
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    node->child = items[0];
    free(items);
    cJSON_ArrayForEach(child, node)
    {
        if (canonicalize(child) != 0)
            return -1;
    }
    return 0;
}

char *util_canonical_json(const char *json)
{
    cJSON *root;
    char *out;

    if (json == NULL)
        return util_strdup("{}");
    root = cJSON_Parse(json);
    if (root == NULL)
        return NULL;
    out = canonicalize(root) == 0 ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return out;
}

char *util_strdup(const char *s)
{
    size_t n;
    char *p;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    p = malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

int util_valid_text(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t extra;
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return 0;
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0 && c >= 0xC2)
            extra = 1;
        else if ((c & 0xF0) == 0xE0)
            extra = 2;
        else if ((c & 0xF8) == 0xF0 && c <= 0xF4)
            extra = 3;
        else
            return 0;
        for (size_t j = 1; j <= extra; j++)
            if (i + j >= len || ((unsigned char)s[i + j] & 0xC0) != 0x80)
                return 0;
        i += extra + 1;
    }
    return 1;
}

void util_buf_add(struct util_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len < n + 1) {
        size_t ncap = b->cap ? b->cap : 1024;
        char *np;
        while (ncap - b->len < n + 1 && ncap <= SIZE_MAX / 2)
            ncap *= 2;
        np = ncap - b->len >= n + 1 ? realloc(b->p, ncap) : NULL;
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void util_buf_str(struct util_buf *b, const char *s)
{
    util_buf_add(b, s, strlen(s));
}

void util_buf_json_string(struct util_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run;

    if (s == NULL) {
        util_buf_add(b, "null", 4);
        return;
    }
    util_buf_add(b, "\"", 1);
    for (run = p; *p != '\0'; p++) {
        char esc[8];
        if (*p >= 32 && *p != '"' && *p != '\\')
            continue;
        util_buf_add(b, (const char *)run, (size_t)(p - run));
        switch (*p) {
        case '"': util_buf_add(b, "\\\"", 2); break;
        case '\\': util_buf_add(b, "\\\\", 2); break;
        case '\b': util_buf_add(b, "\\b", 2); break;
        case '\f': util_buf_add(b, "\\f", 2); break;
        case '\n': util_buf_add(b, "\\n", 2); break;
        case '\r': util_buf_add(b, "\\r", 2); break;
        case '\t': util_buf_add(b, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            util_buf_add(b, esc, 6);
            break;
        }
        run = p + 1;
    }
    util_buf_add(b, (const char *)run, (size_t)(p - run));
    util_buf_add(b, "\"", 1);
}

void util_buf_json_number(struct util_buf *b, double d)
{
    char buf[40];
    double back, big;

    if (isnan(d) || isinf(d)) {
        util_buf_add(b, "null", 4);
        return;
    }
    if (d >= INT32_MIN && d <= INT32_MAX && d == (double)(int)d) { /* int is 32 bits here */
        snprintf(buf, sizeof buf, "%d", (int)d);
    } else {
        snprintf(buf, sizeof buf, "%1.15g", d);
        back = strtod(buf, NULL);
        big = fabs(back) > fabs(d) ? fabs(back) : fabs(d);
        if (!(fabs(back - d) <= big * DBL_EPSILON))
            snprintf(buf, sizeof buf, "%1.17g", d);
    }
    util_buf_str(b, buf);
}

int util_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t got = pread(fd, p, len, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

/* ---- huge pages ------------------------------------------------------------------------ */

#define HUGE_PAGE ((size_t)2 << 20)
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; glibc 2.36's headers predate it */
#endif

void *util_huge_alloc(size_t bytes)
{
    size_t len = bytes ? bytes : 1, span = len + HUGE_PAGE, page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *map, *p;

    /* Over-map by one huge page and keep the 2 MB-aligned part: a range that starts between
     * boundaries has its first and last pieces on 4 KB pages. */
    if (len > SIZE_MAX - 2 * HUGE_PAGE)
        return NULL;
    map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    p = (uint8_t *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    len = (len + page - 1) / page * page;
    if (p > map)
        munmap(map, (size_t)(p - map));
    if (map + span > p + len)
        munmap(p + len, (size_t)(map + span - (p + len)));
    (void)madvise(p, len, MADV_HUGEPAGE); /* a hint: EINVAL where THP is compiled out */
    return p;
}

void util_huge_free(void *p, size_t bytes)
{
    if (p != NULL)
        munmap(p, bytes ? bytes : 1);
}

void util_huge_advise(const void *p, size_t bytes)
{
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(HUGE_PAGE - 1);

    if (p == NULL || hi <= lo)
        return;
    if (madvise((void *)lo, hi - lo, MADV_COLLAPSE) != 0)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}
