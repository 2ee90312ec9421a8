/* Round-trips a buffer through the zlib under test; exits non-zero on any fault. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

int main(void) {
    const char text[] = "Kiln builds zlib, and zlib compresses this line. "
                        "Kiln builds zlib, and zlib compresses this line.";
    unsigned char packed[256], unpacked[256];
    uLongf packed_len = sizeof packed, unpacked_len = sizeof unpacked;
    if (compress(packed, &packed_len, (const Bytef *)text, sizeof text) != Z_OK) return 1;
    if (uncompress(unpacked, &unpacked_len, packed, packed_len) != Z_OK) return 2;
    if (unpacked_len != sizeof text || memcmp(unpacked, text, sizeof text) != 0) return 3;
    printf("zlib %s: %lu bytes -> %lu -> %lu\n", zlibVersion(), (unsigned long)sizeof text,
           (unsigned long)packed_len, (unsigned long)unpacked_len);
    return 0;
}
