/* wordcount: lines, words and bytes of a text, counted as wc(1) counts them. */
#ifndef WORDCOUNT_H
#define WORDCOUNT_H

#include <stddef.h>

struct wordcount {
  size_t lines; /* newline characters */
  size_t words; /* maximal runs of non-space characters */
  size_t bytes;
};

/* Counts `len` bytes of `text`. */
struct wordcount wordcount(const char *text, size_t len);

#endif
