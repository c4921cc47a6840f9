/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * The libkern(9) string and memory functions the module and the harness
 * kernel call (sys/libkern/, sys/amd64/amd64/support.S), built with
 * -fno-builtin so that the compiler does not turn them back into calls
 * to themselves.
 */

#include "hk.h"

#undef memcpy
#undef memmove
#undef memset
#undef memcmp
#undef bcmp
#undef bzero
#undef strcmp
#undef strlen
#undef strncmp

/* As support.S's memcpy_erms: rep movsb. */
void *
memcpy(void *dst, const void *src, size_t len)
{
	void *d = dst;

	__asm__ __volatile__("rep movsb" : "+D"(d), "+S"(src), "+c"(len) : :
	    "memory");
	return (dst);
}

void *
memmove(void *dst, const void *src, size_t len)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d < s) {
		while (len-- > 0)
			*d++ = *s++;
	} else {
		d += len;
		s += len;
		while (len-- > 0)
			*--d = *--s;
	}
	return (dst);
}

/* As support.S's memset_erms: rep stosb. */
void *
memset(void *b, int c, size_t len)
{
	void *p = b;

	__asm__ __volatile__("rep stosb" : "+D"(p), "+c"(len) : "a"(c) :
	    "memory");
	return (b);
}

int
memcmp(const void *b1, const void *b2, size_t len)
{
	const unsigned char *p = b1, *q = b2;

	for (; len > 0; len--, p++, q++)
		if (*p != *q)
			return (*p - *q);
	return (0);
}

int
strcmp(const char *s1, const char *s2)
{

	while (*s1 == *s2++)
		if (*s1++ == '\0')
			return (0);
	return (*(const unsigned char *)s1 - *(const unsigned char *)(s2 - 1));
}

int
strncmp(const char *s1, const char *s2, size_t n)
{

	for (; n > 0; n--, s1++, s2++) {
		if (*s1 != *s2)
			return (*(const unsigned char *)s1 -
			    *(const unsigned char *)s2);
		if (*s1 == '\0')
			break;
	}
	return (0);
}

size_t
strlen(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0')
		n++;
	return (n);
}

size_t
strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;

		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return (n);
}
