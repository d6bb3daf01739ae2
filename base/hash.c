/* SHA-256 through OpenSSL's EVP interface. */
#include <openssl/evp.h>

#include "base/base.h"

void ovha_sha256(const void *p, size_t n, uint8_t out[OVHA_SHA256_LEN])
{
    unsigned int len = OVHA_SHA256_LEN;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

struct ovha_sha256_ctx *ovha_sha256_begin(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return NULL;
    }
    return (struct ovha_sha256_ctx *)c;
}

void ovha_sha256_update(struct ovha_sha256_ctx *c, const void *p, size_t n)
{
    EVP_DigestUpdate((EVP_MD_CTX *)c, p, n);
}

void ovha_sha256_end(struct ovha_sha256_ctx *c, uint8_t out[OVHA_SHA256_LEN])
{
    unsigned int len = OVHA_SHA256_LEN;
    EVP_DigestFinal_ex((EVP_MD_CTX *)c, out, &len);
    EVP_MD_CTX_free((EVP_MD_CTX *)c);
}

void ovha_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}
