# embed.cmake - turns a file into a C source holding its bytes, so the binary carries the file
# instead of reading it at run time.
#   cmake -DIN=docs/openapi.yaml -DOUT=build/generated/openapi_yaml.c -DNAME=openapi_yaml \
#         -P cmake/embed.cmake
# defines  const unsigned char NAME[];  (the bytes, plus a NUL that NAME_len does not count)
#          const size_t NAME_len;
if(NOT DEFINED IN OR NOT DEFINED OUT OR NOT DEFINED NAME)
  message(FATAL_ERROR "embed.cmake: IN, OUT and NAME are required")
endif()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR nbytes "${nhex} / 2")
# 16 bytes per line: "0xAB, " for every byte
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1, " body "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f], " 16 sixteen) # CMake regexes have no {n}
string(REGEX REPLACE "(${sixteen})" "\\1\n    " body "${body}")
file(WRITE "${OUT}.tmp"
  "/* Generated from ${IN} by cmake/embed.cmake; do not edit. */\n"
  "#include <stddef.h>\n\n"
  "extern const unsigned char ${NAME}[];\n"
  "extern const size_t ${NAME}_len;\n\n"
  "const unsigned char ${NAME}[] = {\n    ${body}0x00\n};\n"
  "const size_t ${NAME}_len = ${nbytes};\n")
# Replace only when changed, so an unchanged document does not relink the binary.
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
