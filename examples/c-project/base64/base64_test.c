#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base64.h"

static void expect(const char *in, const char *want) {
  char out[64];
  assert(base64_encoded_length(strlen(in)) == strlen(want));
  assert(strcmp(base64_encode(in, strlen(in), out), want) == 0);
}

int main(void) {
  /* RFC 4648, section 10. */
  expect("", "");
  expect("f", "Zg==");
  expect("fo", "Zm8=");
  expect("foo", "Zm9v");
  expect("foob", "Zm9vYg==");
  expect("fooba", "Zm9vYmE=");
  expect("foobar", "Zm9vYmFy");
  puts("base64: tests passed");
  return 0;
}
