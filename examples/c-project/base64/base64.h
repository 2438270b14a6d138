/* base64: RFC 4648 encoding with padding. */
#ifndef BASE64_H
#define BASE64_H

#include <stddef.h>

/* The length of the encoding of `len` bytes, without the terminating NUL. */
size_t base64_encoded_length(size_t len);

/* Writes the encoding of `len` bytes of `data` and a NUL to `out`, which
 * holds at least base64_encoded_length(len) + 1 bytes. Returns `out`. */
char *base64_encode(const void *data, size_t len, char *out);

#endif
