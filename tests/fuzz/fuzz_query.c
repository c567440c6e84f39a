/* fuzz_query.c - POST /v1/query bodies: json_parse_body + json_parse_query (as h_query). */
#include "fuzz.h"
#include "limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    cJSON *body = NULL;
    stw_query q;
    struct json_query_hold hold;
    stw_error err;
    stw_code rc;
    size_t i;

    memset(&err, 0, sizeof err);
    memset(&hold, 0, sizeof hold);
    memset(&q, 0, sizeof q);
    rc = json_parse_body(text, size, &body, &err);
    fuzz_check_body(rc, text, size, body, &err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_query(body, STW_DEFAULT_MAX_K, &q, &hold, &err);
    if (rc != STW_OK) {
        fuzz_check_error(rc, &err);
        FUZZ_ASSERT(fuzz_zeroed(&hold, sizeof hold));
        goto done;
    }
    fuzz_check_vector(q.vector, q.dim);
    FUZZ_ASSERT(q.k >= 1 && q.k <= STW_DEFAULT_MAX_K);
    FUZZ_ASSERT(q.purpose >= 0 && q.purpose < STW_PURPOSE_COUNT);
    FUZZ_ASSERT(q.nproducts >= 1 && q.nproducts <= STW_MAX_PRODUCTS_PER_QUERY);
    for (i = 0; i < q.nproducts; i++) {
        fuzz_check_string(q.products[i].product, 1, 2 * STW_NAME_MAX + 1);
        fuzz_check_string(q.products[i].version, 0, 2 * STW_NAME_MAX + 1);
    }
    FUZZ_ASSERT(q.filter.nsource_systems <= STW_MAX_FILTER_VALUES);
    FUZZ_ASSERT(q.filter.nsections <= STW_MAX_FILTER_VALUES);
    for (i = 0; i < q.filter.nsource_systems; i++)
        fuzz_check_string(q.filter.source_systems[i], 1, STW_ID_MAX);
    for (i = 0; i < q.filter.nsections; i++)
        fuzz_check_string(q.filter.sections[i], 1, STW_ID_MAX);
    fuzz_check_string(q.filter.subject, 0, STW_ID_MAX);
    fuzz_check_string(q.reason, 0, STW_MAX_REASON_BYTES);
    FUZZ_ASSERT(q.include != 0 || cJSON_GetObjectItemCaseSensitive(body, "include") != NULL);
done:
    json_query_hold_release(&hold);
    cJSON_Delete(body);
    free(text);
    return 0;
}
