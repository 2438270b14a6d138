#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "wordcount.h"

static void expect(const char *text, size_t lines, size_t words) {
  struct wordcount count = wordcount(text, strlen(text));
  assert(count.lines == lines);
  assert(count.words == words);
  assert(count.bytes == strlen(text));
}

int main(void) {
  expect("", 0, 0);
  expect("one", 0, 1);
  expect("one two\n", 1, 2);
  expect("  leading and\ttrailing  \n\nspace ", 2, 4);
  puts("wordcount: tests passed");
  return 0;
}
