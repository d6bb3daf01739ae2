/* enforce/fw_compile: a policy and a member model into one nft script.
 *
 * Layout of our table (docs/firewall.md shows an example):
 *
 *   table inet ovha {
 *       set clients4 / clients6         every member address
 *       set g4_<group> / g6_<group>     members of one group
 *       chain forward                   hook forward, priority filter,
 *                                       policy accept:
 *           iifname "<dev>" jump from_clients
 *       chain from_clients
 *           ct state established,related accept
 *           <one or two lines per rule, in order>
 *           ip daddr @clients4 drop      (isolation on)
 *           ip6 daddr @clients6 drop
 *           accept | drop                (the default)
 *   }
 *
 * A rule that names a group or a network, or matches ICMP, is written
 * once per family it can match (an IPv4 network only for IPv4); other
 * rules once, without a family match. The script starts with
 * "table X" + "delete table X" so that one transaction replaces an
 * existing table and creates a missing one alike, and ends with the
 * element lists, so the table never exists half-filled.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "enforce/fw_int.h"

void enf_fw_set_name(int group,
                     uint8_t family,
                     const char (*groups)[ENF_FW_GROUP_LEN],
                     char *buf,
                     size_t len)
{
    if (group < 0) {
        ovha_strlcpy(
            buf, family == AF_INET ? ENF_FW_SET_CLIENTS4 : ENF_FW_SET_CLIENTS6,
            len);
        return;
    }
    snprintf(buf, len, "g%c_%s", family == AF_INET ? '4' : '6', groups[group]);
}

/* ---- rules --------------------------------------------------------------- */

static const char *enf_fw_fam_kw(uint8_t family)
{
    return family == AF_INET ? "ip" : "ip6";
}

static int enf_fw_emit_ports(struct ovha_buf *b, const struct enf_fw_rule *r)
{
    const char *l4 = r->proto == ENF_FW_PROTO_TCP ? "tcp" : "udp";
    if (r->nports == 0) {
        return ovha_buf_printf(b, "meta l4proto %s", l4);
    }
    int err = ovha_buf_printf(b, "%s dport %s", l4, r->nports > 1 ? "{ " : "");
    for (size_t i = 0; err == 0 && i < r->nports; i++) {
        const struct enf_fw_portrange *pr = &r->ports[i];
        err = ovha_buf_printf(b, "%s%u", i > 0 ? ", " : "", (unsigned)pr->lo);
        if (err == 0 && pr->hi != pr->lo) {
            err = ovha_buf_printf(b, "-%u", (unsigned)pr->hi);
        }
    }
    if (err == 0 && r->nports > 1) {
        err = ovha_buf_appends(b, " }");
    }
    return err;
}

/* One line of rule r for family (0: family-independent). */
static int enf_fw_emit_rule_line(struct ovha_buf *b,
                                 const struct enf_fw_policy *p,
                                 const struct enf_fw_rule *r,
                                 uint8_t family)
{
    char set[ENF_FW_SET_LEN];
    int err = ovha_buf_appends(b, "\t\t");
    bool fam_matched = false;
    if (err == 0 && r->from >= 0) {
        enf_fw_set_name(r->from, family, p->groups, set, sizeof(set));
        err = ovha_buf_printf(b, "%s saddr @%s ", enf_fw_fam_kw(family), set);
        fam_matched = true;
    }
    if (err == 0 && r->to_kind == ENF_FW_TO_GROUP) {
        enf_fw_set_name(r->to_group, family, p->groups, set, sizeof(set));
        err = ovha_buf_printf(b, "%s daddr @%s ", enf_fw_fam_kw(family), set);
        fam_matched = true;
    } else if (err == 0 && r->to_kind == ENF_FW_TO_CIDR) {
        char a[INET6_ADDRSTRLEN];
        enf_fw_addr_format(&r->to_net, a, sizeof(a));
        err = ovha_buf_printf(b, "%s daddr %s/%u ", enf_fw_fam_kw(family), a,
                              (unsigned)r->to_net.prefix);
        fam_matched = true;
    }
    if (err == 0 && family != 0 && !fam_matched) {
        err = ovha_buf_printf(b, "meta nfproto %s ",
                              family == AF_INET ? "ipv4" : "ipv6");
    }
    if (err == 0 && r->proto == ENF_FW_PROTO_ICMP) {
        err = ovha_buf_printf(b, "meta l4proto %s ",
                              family == AF_INET ? "icmp" : "ipv6-icmp");
    } else if (err == 0 && r->proto != ENF_FW_PROTO_ANY) {
        err = enf_fw_emit_ports(b, r);
        err = err < 0 ? err : ovha_buf_appends(b, " ");
    }
    if (err == 0) {
        err = ovha_buf_printf(b, "%s comment \"rule %s\"\n",
                              r->action == ENF_FW_ACCEPT ? "accept" : "drop",
                              r->name);
    }
    return err;
}

static int enf_fw_emit_rule(struct ovha_buf *b,
                            const struct enf_fw_policy *p,
                            const struct enf_fw_rule *r)
{
    bool per_family = r->from >= 0 || r->to_kind != ENF_FW_TO_ANY ||
                      r->proto == ENF_FW_PROTO_ICMP;
    if (!per_family) {
        return enf_fw_emit_rule_line(b, p, r, 0);
    }
    static const uint8_t fams[] = { AF_INET, AF_INET6 };
    for (size_t i = 0; i < 2; i++) {
        if (r->to_kind == ENF_FW_TO_CIDR && r->to_net.family != fams[i]) {
            continue;
        }
        int err = enf_fw_emit_rule_line(b, p, r, fams[i]);
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

/* ---- the table block ----------------------------------------------------- */

static int enf_fw_emit_sets(struct ovha_buf *b, const struct enf_fw_plan *plan)
{
    int err = 0;
    for (size_t i = 0; err == 0 && i < plan->nsets; i++) {
        const struct enf_fw_setdef *s = &plan->sets[i];
        err = ovha_buf_printf(b, "\tset %s {\n\t\ttype %s\n", s->name,
                              s->family == AF_INET ? "ipv4_addr" : "ipv6_addr");
        if (err == 0) {
            err = ovha_buf_appends(b, "\t}\n");
        }
    }
    return err;
}

static int enf_fw_emit_table(struct ovha_buf *b,
                             const struct enf_fw_policy *p,
                             const struct enf_fw_plan *plan,
                             const char *dev,
                             const char *table)
{
    int err = ovha_buf_printf(b, "table inet %s {\n", table);
    err = err < 0 ? err : enf_fw_emit_sets(b, plan);
    if (err == 0) {
        err = ovha_buf_printf(b,
                              "\tchain forward {\n"
                              "\t\ttype filter hook forward priority filter; "
                              "policy accept;\n"
                              "\t\tiifname \"%s\" jump from_clients\n"
                              "\t}\n"
                              "\tchain from_clients {\n"
                              "\t\tct state established,related accept\n",
                              dev);
    }
    for (size_t i = 0; err == 0 && i < p->nrules; i++) {
        err = enf_fw_emit_rule(b, p, &p->rules[i]);
    }
    if (err == 0 && p->isolation) {
        err = ovha_buf_printf(b,
                              "\t\tip daddr @%s drop comment \"isolation\"\n"
                              "\t\tip6 daddr @%s drop comment \"isolation\"\n",
                              ENF_FW_SET_CLIENTS4, ENF_FW_SET_CLIENTS6);
    }
    if (err == 0) {
        err = ovha_buf_printf(b, "\t\t%s comment \"default\"\n\t}\n}\n",
                              p->def == ENF_FW_ACCEPT ? "accept" : "drop");
    }
    return err;
}

/* "add element inet T S { a, b, ... }" for every non-empty set. */
static int enf_fw_emit_elements(struct ovha_buf *b,
                                const struct enf_fw_plan *plan,
                                const char *table)
{
    int err = 0;
    for (size_t i = 0; err == 0 && i < plan->nsets; i++) {
        const struct enf_fw_setdef *s = &plan->sets[i];
        if (s->nelems == 0) {
            continue;
        }
        err = ovha_buf_printf(b, "add element inet %s %s { ", table, s->name);
        for (size_t j = 0; err == 0 && j < s->nelems; j++) {
            char a[INET6_ADDRSTRLEN];
            enf_fw_addr_format(&s->elems[j], a, sizeof(a));
            err = ovha_buf_printf(b, "%s%s", j > 0 ? ", " : "", a);
        }
        if (err == 0) {
            err = ovha_buf_appends(b, " }\n");
        }
    }
    return err;
}

/* ---- sets ---------------------------------------------------------------- */

/* Counts the elements of every set, then fills them (members sorted, so
 * every set comes out sorted too). */
static int enf_fw_plan_sets(struct enf_fw_plan *plan,
                            const struct enf_fw_policy *p,
                            const struct enf_fw_memvec *mv)
{
    plan->nsets = 2 + 2 * p->ngroups;
    plan->sets = ovha_calloc(plan->nsets, sizeof(*plan->sets));
    if (plan->sets == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < plan->nsets; i++) {
        struct enf_fw_setdef *s = &plan->sets[i];
        s->family = i % 2 == 0 ? AF_INET : AF_INET6;
        s->group = (int)(i / 2) - 1;
        enf_fw_set_name(s->group, s->family, p->groups, s->name,
                        sizeof(s->name));
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < plan->nsets; i++) {
            struct enf_fw_setdef *s = &plan->sets[i];
            if (pass == 1) {
                s->elems =
                    ovha_calloc(s->nelems ? s->nelems : 1, sizeof(*s->elems));
                if (s->elems == NULL) {
                    return -ENOMEM;
                }
            }
            s->nelems = 0;
        }
        for (size_t m = 0; m < mv->n; m++) {
            const struct enf_fw_mem *mem = &mv->v[m];
            size_t fam = mem->addr.family == AF_INET ? 0 : 1;
            for (size_t i = fam; i < plan->nsets; i += 2) {
                struct enf_fw_setdef *s = &plan->sets[i];
                if (s->group >= 0 && !(mem->mask & (UINT64_C(1) << s->group))) {
                    continue;
                }
                if (pass == 1) {
                    s->elems[s->nelems] = mem->addr;
                }
                s->nelems++;
            }
        }
    }
    return 0;
}

void enf_fw_plan_free(struct enf_fw_plan *plan)
{
    for (size_t i = 0; plan->sets != NULL && i < plan->nsets; i++) {
        ovha_free(plan->sets[i].elems);
    }
    ovha_free(plan->sets);
    ovha_free(plan->script);
    ovha_free(plan->table_text);
    memset(plan, 0, sizeof(*plan));
}

int enf_fw_plan_build(const struct enf_fw_policy *p,
                      const struct enf_fw_memvec *members,
                      const char *dev,
                      const char *table,
                      struct enf_fw_plan *ret)
{
    struct enf_fw_plan plan;
    memset(&plan, 0, sizeof(plan));
    struct ovha_buf block, script;
    ovha_buf_init(&block);
    ovha_buf_init(&script);
    int err = enf_fw_plan_sets(&plan, p, members);
    err = err < 0 ? err : enf_fw_emit_table(&block, p, &plan, dev, table);
    if (err == 0) {
        /* The elements of 10,000 members take ~20 bytes each. */
        err = ovha_buf_reserve(&script, block.len + 64 + members->n * 48);
    }
    if (err == 0) {
        err = ovha_buf_printf(&script, "table inet %s\ndelete table inet %s\n",
                              table, table);
    }
    err = err < 0 ? err : ovha_buf_append(&script, block.data, block.len);
    err = err < 0 ? err : enf_fw_emit_elements(&script, &plan, table);
    if (err < 0) {
        ovha_buf_free(&block);
        ovha_buf_free(&script);
        enf_fw_plan_free(&plan);
        return err;
    }
    plan.table_text = block.data;
    plan.script = script.data;
    *ret = plan;
    return 0;
}

int enf_fw_compile(const struct enf_fw_policy *p,
                   const struct enf_fw_member *members,
                   size_t nmembers,
                   const char *dev,
                   const char *table,
                   char **ret_text,
                   char *errbuf,
                   size_t errlen)
{
    table = table != NULL ? table : ENF_FW_TABLE_DEFAULT;
    if (!enf_fw_valid_dev(dev) || !enf_fw_valid_table(table)) {
        enf_fw_errf(errbuf, errlen, "compile: bad device or table name");
        return -EINVAL;
    }
    struct enf_fw_memvec mv;
    int err = enf_fw_members_build(members, nmembers, p->groups, p->ngroups,
                                   &mv, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_fw_plan plan;
    err = enf_fw_plan_build(p, &mv, dev, table, &plan);
    enf_fw_memvec_free(&mv);
    if (err < 0) {
        enf_fw_errf(errbuf, errlen, "compile: out of memory");
        return err;
    }
    *ret_text = plan.script;
    plan.script = NULL;
    enf_fw_plan_free(&plan);
    return 0;
}
