#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crc32.h"

int main(void) {
  const char *fox = "The quick brown fox jumps over the lazy dog";
  assert(crc32_update(0, "", 0) == 0);
  assert(crc32_update(0, "123456789", 9) == 0xCBF43926u); /* the standard check value */
  assert(crc32_update(0, fox, strlen(fox)) == 0x414FA339u);
  /* In two pieces, the same. */
  assert(crc32_update(crc32_update(0, fox, 10), fox + 10, strlen(fox) - 10) == 0x414FA339u);
  puts("crc32: tests passed");
  return 0;
}
