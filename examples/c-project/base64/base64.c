#include "base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_length(size_t len) { return (len + 2) / 3 * 4; }

char *base64_encode(const void *data, size_t len, char *out) {
  const unsigned char *in = data;
  char *o = out;
  for (size_t i = 0; i < len; i += 3) {
    unsigned long group = (unsigned long)in[i] << 16;
    if (i + 1 < len) group |= (unsigned long)in[i + 1] << 8;
    if (i + 2 < len) group |= in[i + 2];
    *o++ = alphabet[(group >> 18) & 63];
    *o++ = alphabet[(group >> 12) & 63];
    *o++ = i + 1 < len ? alphabet[(group >> 6) & 63] : '=';
    *o++ = i + 2 < len ? alphabet[group & 63] : '=';
  }
  *o = '\0';
  return out;
}
