/* raft/entry: the record layout inside a raft entry (internal).
 *
 * An entry is one or more records, each a u32 little-endian length and
 * that many bytes of an encoded proto_cmd, then zero padding to a multiple
 * of 8 (libraft 0.15 corrupts its segments otherwise; ADR-003). The
 * adapter reads records, rft_cmd_buffer and the runtime's batches write
 * them. */
#ifndef OVHA_RAFT_ENTRY_H
#define OVHA_RAFT_ENTRY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RFT_ENTRY_HDR 4

static inline uint32_t rft_entry_len(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Writes one record at p; returns its size. */
static inline size_t rft_entry_put(uint8_t *p, const uint8_t *cmd, size_t len)
{
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 24);
    memcpy(p + RFT_ENTRY_HDR, cmd, len);
    return RFT_ENTRY_HDR + len;
}

/* Size of an entry holding records of payload bytes in total, n records. */
static inline size_t rft_entry_size(size_t payload, size_t n)
{
    return (payload + n * RFT_ENTRY_HDR + 7) & ~(size_t)7;
}

#endif
