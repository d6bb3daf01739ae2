/* Command builders shared by fsm's tests, fuzz driver and benchmark. Each
 * builds a proto_cmd, encodes it and applies it, as a raft entry would be. */
#ifndef OVHA_FSM_TEST_UTIL_H
#define OVHA_FSM_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "fsm/fsm.h"
#include "proto/proto.h"

/* Fills the envelope: version, gateway, ts, req_id; zeroes the body. */
void fsmt_env(struct proto_cmd *c,
              enum proto_cmd_kind kind,
              const char *gw,
              uint64_t ts,
              uint64_t req_id);
/* Encodes c and applies it. Returns fsm_apply's value or the encoder's. */
int fsmt_apply(struct fsm *f,
               const struct proto_cmd *c,
               struct proto_result *r);
/* Encodes c into *ret_buf (ovha_free). */
int fsmt_encode(const struct proto_cmd *c, uint8_t **ret_buf, size_t *ret_len);

int fsmt_heartbeat(struct fsm *f,
                   const char *gw,
                   uint64_t ts,
                   struct proto_result *r);
int fsmt_set_state(struct fsm *f,
                   const char *gw,
                   enum proto_gw_state state,
                   uint64_t ts,
                   struct proto_result *r);
int fsmt_pool(struct fsm *f,
              const char *name,
              const char *cidr,
              uint64_t ttl_ms,
              uint64_t ts,
              struct proto_result *r);
int fsmt_open(struct fsm *f,
              const char *gw,
              const char *cn,
              const char *pool4,
              const char *pool6,
              uint32_t max_sessions,
              enum proto_on_excess excess,
              uint64_t ts,
              struct proto_result *r);
int fsmt_close(struct fsm *f,
               const char *gw,
               uint64_t sid,
               uint64_t ts,
               struct proto_result *r);
int fsmt_charge(struct fsm *f,
                const char *gw,
                uint64_t seq,
                const char *period,
                struct proto_usage_entry *e,
                size_t n,
                uint64_t ts,
                struct proto_result *r);

/* Deterministic PRNG for tests (xorshift64*). */
uint64_t fsmt_rand(uint64_t *state);

#endif
