/* gcc-built smoke driver for fuzz_apply.c: feeds seeded random bytes and
 * mutated valid commands (bit flips, truncation, splices) through the same
 * LLVMFuzzerTestOneInput, a bounded number of times. Exit 0 = no crash, no
 * invariant broken (the target aborts otherwise).
 *
 * usage: fsm_fuzz_smoke [iterations] [seed]
 *        fsm_fuzz_smoke --write-seeds DIR [count]   (corpus for libFuzzer) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "fsm/tests/fsm_test_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A valid command of a random kind with random small fields. */
static int fuzzs_valid(uint64_t *rng, uint8_t **ret_buf, size_t *ret_len)
{
    struct proto_cmd c;
    struct proto_usage_entry ents[4];
    enum proto_cmd_kind kind =
        (enum proto_cmd_kind)(fsmt_rand(rng) % PROTO_CMD_KIND_MAX);
    fsmt_env(&c, kind, fsmt_rand(rng) % 2 ? "gw-1" : "gw-2",
             1000 + fsmt_rand(rng) % 1000000, fsmt_rand(rng) % 50);
    uint64_t sid = 1 + fsmt_rand(rng) % 20;
    switch (kind) {
    case PROTO_CMD_SESSION_OPEN:
        snprintf(c.u.session_open.cn, 16, "c%u", (unsigned)(sid % 8));
        strcpy(c.u.session_open.pool4, "p4");
        strcpy(c.u.session_open.pool6, fsmt_rand(rng) % 2 ? "p6" : "");
        c.u.session_open.max_sessions = (uint32_t)(fsmt_rand(rng) % 3);
        break;
    case PROTO_CMD_SESSION_ESTABLISHED:
    case PROTO_CMD_SESSION_CLOSE:
        c.u.session_close.session_id = sid;
        break;
    case PROTO_CMD_USAGE_CHARGE:
        c.u.usage_charge.seq = fsmt_rand(rng) % 10;
        strcpy(c.u.usage_charge.period, "2026-11");
        c.u.usage_charge.nentries = fsmt_rand(rng) % 4;
        c.u.usage_charge.entries = ents;
        for (size_t i = 0; i < 4; i++) {
            memset(&ents[i], 0, sizeof(ents[i]));
            ents[i].session_id = sid + i;
            snprintf(ents[i].cn, 16, "c%u", (unsigned)i);
            ents[i].bytes_in = fsmt_rand(rng) % 100000;
        }
        break;
    case PROTO_CMD_GATEWAY_SET_STATE:
        strcpy(c.u.gateway_set_state.gateway_id, "gw-1");
        c.u.gateway_set_state.state = (enum proto_gw_state)(sid % 4);
        break;
    case PROTO_CMD_LEASE_RESERVE:
    case PROTO_CMD_LEASE_RELEASE:
        strcpy(c.u.lease_reserve.cn, "c1");
        snprintf(c.u.lease_reserve.ip, 32, "100.64.0.%u", (unsigned)sid);
        break;
    case PROTO_CMD_POOL_PUT:
        strcpy(c.u.pool_put.name, "p9");
        snprintf(c.u.pool_put.cidr, 32, "100.65.%u.0/24", (unsigned)sid);
        break;
    case PROTO_CMD_POLICY_DELETE:
        strcpy(c.u.policy_delete.name, "x");
        break;
    case PROTO_CMD_SUBNET_REGISTER:
    case PROTO_CMD_SUBNET_RELEASE:
        snprintf(c.u.subnet_register.cidr, 32, "100.70.%u.0/24", (unsigned)sid);
        strcpy(c.u.subnet_register.owner_cn, "c1");
        break;
    case PROTO_CMD_AUDIT_APPEND:
        strcpy(c.u.audit_append.action, "note");
        break;
    default:
        break;
    }
    return fsmt_encode(&c, ret_buf, ret_len);
}

static void fuzzs_mutate(uint64_t *rng, uint8_t *buf, size_t *len)
{
    unsigned n = 1 + (unsigned)(fsmt_rand(rng) % 4);
    for (unsigned i = 0; i<n && * len> 0; i++) {
        size_t at = fsmt_rand(rng) % *len;
        switch (fsmt_rand(rng) % 4) {
        case 0:
            buf[at] ^= (uint8_t)(1u << (fsmt_rand(rng) % 8));
            break;
        case 1:
            buf[at] = (uint8_t)fsmt_rand(rng);
            break;
        case 2:
            *len = at; /* truncate */
            break;
        default:
            buf[at] = (uint8_t)(fsmt_rand(rng) % 2 ? 0xff : 0x00);
            break;
        }
    }
}

/* Writes valid encoded commands as files DIR/seed-N for libFuzzer. */
static int fuzzs_write_seeds(const char *dir, unsigned long count)
{
    uint64_t rng = 0xc0ffee;
    for (unsigned long i = 0; i < count; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        char path[4096];
        if (fuzzs_valid(&rng, &buf, &len) != 0) {
            return 1;
        }
        snprintf(path, sizeof(path), "%s/seed-%lu", dir, i);
        FILE *fp = fopen(path, "wb");
        if (fp == NULL || fwrite(buf, 1, len, fp) != len) {
            perror(path);
            ovha_free(buf);
            if (fp != NULL) {
                fclose(fp);
            }
            return 1;
        }
        fclose(fp);
        ovha_free(buf);
    }
    printf("fsm_fuzz_smoke: wrote %lu seeds to %s\n", count, dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--write-seeds") == 0) {
        return fuzzs_write_seeds(argv[2],
                                 argc > 3 ? strtoul(argv[3], NULL, 10) : 200);
    }
    unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    uint64_t rng = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x5eed;
    unsigned long valid = 0, mutated = 0, random = 0;
    uint8_t junk[512];

    for (unsigned long i = 0; i < iters; i++) {
        uint64_t pick = fsmt_rand(&rng) % 3;
        if (pick == 2) {
            size_t len = fsmt_rand(&rng) % sizeof(junk);
            for (size_t j = 0; j < len; j++) {
                junk[j] = (uint8_t)fsmt_rand(&rng);
            }
            LLVMFuzzerTestOneInput(junk, len);
            random++;
            continue;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        if (fuzzs_valid(&rng, &buf, &len) != 0) {
            fprintf(stderr, "fsm_fuzz_smoke: encode failed\n");
            return 1;
        }
        if (pick == 1) {
            fuzzs_mutate(&rng, buf, &len);
            mutated++;
        } else {
            valid++;
        }
        LLVMFuzzerTestOneInput(buf, len);
        ovha_free(buf);
    }
    printf(
        "fsm_fuzz_smoke: %lu inputs (%lu valid, %lu mutated, %lu random)"
        ": 0 crashes\n",
        iters, valid, mutated, random);
    return 0;
}
