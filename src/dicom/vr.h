/*
 * vr.h - Value Representations (PS3.5 section 6.2, table 6.2-1).
 *
 * Every VR of the current standard, with the properties the reader and the
 * writer need: the form of its explicit-VR header, the size of the units a
 * byte-order change swaps, its padding byte, and whether its text follows
 * Specific Character Set.
 */
#ifndef DCM_VR_H
#define DCM_VR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DCM_VR_LIST(X) \
    X(AE) X(AS) X(AT) X(CS) X(DA) X(DS) X(DT) X(FD) X(FL) X(IS) X(LO) X(LT) \
    X(OB) X(OD) X(OF) X(OL) X(OV) X(OW) X(PN) X(SH) X(SL) X(SQ) X(SS) X(ST) \
    X(SV) X(TM) X(UC) X(UI) X(UL) X(UN) X(UR) X(US) X(UT) X(UV)

typedef enum {
    DCM_VR_NONE = 0,    /* not known: no dictionary entry under implicit VR */
#define DCM_VR_ENUM(name) DCM_VR_##name,
    DCM_VR_LIST(DCM_VR_ENUM)
#undef DCM_VR_ENUM
    DCM_VR_COUNT
} dcm_vr;

/* The VR spelled by two bytes ("PN"), or DCM_VR_NONE if they spell none. */
dcm_vr dcm_vr_from_bytes(uint8_t c0, uint8_t c1);

/* "PN" for DCM_VR_PN; "??" for DCM_VR_NONE or out of range. */
const char *dcm_vr_name(dcm_vr vr);

/*
 * In explicit VR, whether the element header is 12 bytes (2 reserved bytes and
 * a 32-bit length: OB, OD, OF, OL, OV, OW, SQ, SV, UC, UN, UR, UT, UV) rather
 * than 8 bytes with a 16-bit length.
 */
bool dcm_vr_has_long_length(dcm_vr vr);

/*
 * Size in bytes of the units that are byte-swapped between little and big
 * endian: 2 for AT (swapped as two 16-bit halves), OW, SS, US; 4 for FL, OF, OL,
 * SL, UL; 8 for FD, OD, OV, SV, UV; 1 for everything else (strings, OB, UN).
 */
size_t dcm_vr_swap_unit(dcm_vr vr);

/* Byte used to pad values to even length: NUL for UI, OB, UN; space for text. */
uint8_t dcm_vr_padding(dcm_vr vr);

/* Character-string VRs (AE, AS, CS, DA, DS, DT, IS, LO, LT, PN, SH, ST, TM, UC, UI, UR, UT). */
bool dcm_vr_is_string(dcm_vr vr);

/*
 * VRs whose text is encoded in the Specific Character Set (PS3.5 6.1.2.3):
 * LO, LT, PN, SH, ST, UC, UT. The others are in the default repertoire.
 */
bool dcm_vr_uses_charset(dcm_vr vr);

/* String VRs whose value may hold several values separated by `\`. LT, ST, UT, UR may not. */
bool dcm_vr_is_multi_valued_string(dcm_vr vr);

/* Binary VRs: OB, OD, OF, OL, OV, OW, UN. */
bool dcm_vr_is_bulk(dcm_vr vr);

/* Numeric VRs (AT, FD, FL, SL, SS, SV, UL, US, UV): the size of one value; 0 otherwise. */
size_t dcm_vr_numeric_size(dcm_vr vr);

#endif
