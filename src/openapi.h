/* openapi.h - docs/openapi.yaml, built into the binary.
 *
 * CMake turns docs/openapi.yaml into a generated C source (cmake/embed.cmake) at build time,
 * so the document the server sends at GET /openapi.yaml is always the one it was built with
 * and no file is read at run time. tests/test_openapi.c checks the same bytes against the
 * route table.
 */
#ifndef STW_OPENAPI_H
#define STW_OPENAPI_H

#include <stddef.h>

/* Static storage: openapi_yaml_len bytes of YAML, followed by a NUL not counted in the
 * length. Thread: any (read-only). */
extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;

#endif
