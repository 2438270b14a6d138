/* crc32: the CRC-32 of zlib, PNG and Ethernet (IEEE 802.3, reflected, 0xEDB88320). */
#ifndef CRC32_H
#define CRC32_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32 of `len` bytes of `data`, continuing from `crc` (0 to start). */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

#endif
