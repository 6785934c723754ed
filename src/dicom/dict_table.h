/*
 * dict_table.h - the layout of the tables tools/gen_dict.py generates into
 * dict_table.c and uid_table.c from PS3.6, shared by those files, dict.c and
 * uid.c only. It is not part of the public API: use dict.h and uid.h.
 */
#ifndef DCM_DICT_TABLE_H
#define DCM_DICT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dicom/dict.h"
#include "dicom/uid.h"

/* Public elements sorted by tag, all with mask 0xFFFFFFFF. */
extern const dcm_dict_entry dcm_dict_public[];
extern const size_t dcm_dict_public_count;

/* Repeating groups and elements (50xx, 60xx, 1000 xxx0, ...), most specific first. */
extern const dcm_dict_entry dcm_dict_repeaters[];
extern const size_t dcm_dict_repeaters_count;

/*
 * Entries with a keyword, sorted by keyword in byte order: an index i below
 * dcm_dict_public_count is dcm_dict_public[i], otherwise
 * dcm_dict_repeaters[i - dcm_dict_public_count].
 */
extern const uint16_t dcm_dict_keyword_index[];
extern const size_t dcm_dict_keyword_count;

/*
 * A Private Creator value and its elements: dcm_dict_private[first] to
 * [first + count - 1], sorted by tag, the block byte as 00 and masked off.
 */
typedef struct dcm_dict_creator {
    const char *creator;
    uint16_t first;
    uint16_t count;
} dcm_dict_creator;

/* Sorted by creator in byte order. */
extern const dcm_dict_creator dcm_dict_creators[];
extern const size_t dcm_dict_creators_count;
extern const dcm_dict_entry dcm_dict_private[];

/* A registry entry and whether it is a storage SOP class (PS3.4 Annex B). */
typedef struct dcm_uid_row {
    dcm_uid_entry entry;
    bool storage;
} dcm_uid_row;

/* Sorted by UID in byte order. */
extern const dcm_uid_row dcm_uid_table[];
extern const size_t dcm_uid_table_count;

#endif
