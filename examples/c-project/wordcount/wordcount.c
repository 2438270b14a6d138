#include "wordcount.h"

#include <ctype.h>

struct wordcount wordcount(const char *text, size_t len) {
  struct wordcount count = {0, 0, len};
  int in_word = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '\n') count.lines++;
    if (isspace(c)) {
      in_word = 0;
    } else if (!in_word) {
      in_word = 1;
      count.words++;
    }
  }
  return count;
}
