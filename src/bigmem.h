/*
** bigmem.h: C memory for big scratch arrays that live for one call and
** grow to megabytes: the encoder's seen map, the frame stacks of deep
** walks, the slabs and the big blocks of a Lua heap (heap.c).
**
** A megabyte-sized block from the C library is mapped fresh and faulted
** in a 4 KiB page at a time; on these virtual machines a fault costs
** microseconds, and sending a million-node list took a hundred thousand
** of them a trip.  Blocks of BIG_MIN bytes or more are mapped here
** instead, aligned to 2 MiB and advised as huge pages (MADV_HUGEPAGE,
** which the kernel honours in its "madvise" setting, Debian's default):
** one fault per 2 MiB.  Where the kernel gives no huge pages they are
** ordinary pages, as before.  Smaller blocks, and every block in the
** sanitizer and failing-allocator builds (whose checks must see them),
** come from the C library.
**
** The caller passes the block's size back on every call: the size says
** where the block came from, so there is no header.
*/
#ifndef CFUT_BIGMEM_H
#define CFUT_BIGMEM_H

#include <stddef.h>

#define BIG_MIN   ((size_t)1 << 21)      /* mapped from this size up */
#define BIG_ALIGN ((size_t)1 << 21)      /* a huge page */

/* n bytes, zeroed when 'zero'; NULL when there is no memory. */
void *big_alloc (size_t n, int zero);
/* p (of oldn bytes) grown or shrunk to n, its first bytes kept; NULL when
** there is no memory (p is then untouched). */
void *big_resize (void *p, size_t oldn, size_t n);
/* Give back p, of n bytes (NULL: nothing). */
void big_free (void *p, size_t n);
/* Whether blocks of oldn and n bytes come from the same place, so that a
** block of oldn bytes may be freed as one of n: a caller that keeps a
** block when a shrink fails must check this first.  A shrink between two
** mapped sizes never fails. */
int big_samekind (size_t oldn, size_t n);

#endif
