/* textinfo: what each of the project's three libraries says about a text.
 *
 *   textinfo [TEXT...]   the words given, joined by spaces; without any, a sample
 *   textinfo -           standard input
 */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "crc32.h"
#include "wordcount.h"

static const char sample[] = "The quick brown fox jumps over the lazy dog\n";

/* The whole of standard input, NUL-terminated, its length in *len; NULL when
 * out of memory. */
static char *read_stdin(size_t *len) {
  size_t cap = 4096;
  char *buf = malloc(cap);
  *len = 0;
  while (buf) {
    *len += fread(buf + *len, 1, cap - *len - 1, stdin);
    if (*len < cap - 1) break; /* end of input (or an error) */
    char *bigger = realloc(buf, cap *= 2);
    if (!bigger) free(buf);
    buf = bigger;
  }
  if (buf) buf[*len] = '\0';
  return buf;
}

/* argv[1..argc-1] joined by spaces, NUL-terminated. */
static char *join(int argc, char **argv, size_t *len) {
  *len = 0;
  for (int i = 1; i < argc; i++) *len += strlen(argv[i]) + (i > 1);
  char *text = malloc(*len + 1);
  if (!text) return NULL;
  text[0] = '\0';
  for (int i = 1; i < argc; i++) {
    if (i > 1) strcat(text, " ");
    strcat(text, argv[i]);
  }
  return text;
}

int main(int argc, char **argv) {
  size_t len = 0;
  char *text;
  if (argc == 2 && strcmp(argv[1], "-") == 0) {
    text = read_stdin(&len);
  } else if (argc > 1) {
    text = join(argc, argv, &len);
  } else {
    len = strlen(sample);
    text = strdup(sample);
  }
  char *encoded = text ? malloc(base64_encoded_length(len) + 1) : NULL;
  if (!encoded) {
    fputs("textinfo: out of memory\n", stderr);
    return 1;
  }
  struct wordcount count = wordcount(text, len);
  printf("textinfo: three libraries, each built in its own stage\n");
  printf("  wordcount  %zu lines, %zu words, %zu bytes\n", count.lines, count.words,
         count.bytes);
  printf("  crc32      %08x\n", (unsigned)crc32_update(0, text, len));
  printf("  base64     %s\n", base64_encode(text, len, encoded));
  free(encoded);
  free(text);
  return 0;
}
