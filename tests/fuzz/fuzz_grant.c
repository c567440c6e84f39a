/* fuzz_grant.c - POST /v1/grants bodies: json_parse_body + json_parse_grant (as
 * h_grant_create). */
#include "fuzz.h"
#include "limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    cJSON *body = NULL;
    stw_grant g;
    stw_error err;
    stw_code rc;
    size_t i;

    memset(&err, 0, sizeof err);
    memset(&g, 0, sizeof g);
    rc = json_parse_body(text, size, &body, &err);
    fuzz_check_body(rc, text, size, body, &err);
    if (rc != STW_OK)
        goto done;
    rc = json_parse_grant(body, &g, &err);
    if (rc != STW_OK) {
        fuzz_check_error(rc, &err);
        FUZZ_ASSERT(fuzz_zeroed(&g, sizeof g));
        goto done;
    }
    FUZZ_ASSERT(stw_valid_principal_name(g.principal));
    FUZZ_ASSERT((g.product[0] != '\0') != (g.domain[0] != '\0')); /* exactly one */
    FUZZ_ASSERT(g.product[0] == '\0' || stw_valid_name(g.product));
    FUZZ_ASSERT(g.domain[0] == '\0' || stw_valid_principal_name(g.domain));
    FUZZ_ASSERT(g.purposes != 0 && (g.purposes >> STW_PURPOSE_COUNT) == 0);
    FUZZ_ASSERT(g.clearance >= 0 && stw_conf_name(g.clearance) != NULL);
    FUZZ_ASSERT(g.ncompartments <= STW_MAX_LABELS);
    for (i = 0; i < g.ncompartments; i++)
        FUZZ_ASSERT(g.compartments[i][0] != '\0');
    FUZZ_ASSERT(g.id[0] == '\0'); /* the server assigns ids */
done:
    cJSON_Delete(body);
    free(text);
    return 0;
}
