/*
 * fuzz_rle.c - libFuzzer target for the RLE Lossless decoder
 * (src/pixel/rle.c: PS3.5 Annex G). The input is described in fuzz_frame.h;
 * the frame is the 64-byte header and the segments.
 */
#include "fuzz_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    px_image img;
    px_frame frame;
    cp_error err;
    cp_status status;

    if (size < FUZZ_FRAME_HEADER)
        return 0;
    fuzz_frame_image(data, "1.2.840.10008.1.2.5", &img);
    memset(&frame, 0, sizeof frame);
    status = px_rle_decode(&img, data + FUZZ_FRAME_HEADER, size - FUZZ_FRAME_HEADER, &frame, &err);
    fuzz_frame_check(&img, status, &frame);
    return 0;
}
