/* Calendar dates in the vendor's YYYYMMDD form; see date.c. */
#ifndef CARDLIC_DATE_H
#define CARDLIC_DATE_H

#include <stddef.h>
#include <time.h>

#define DATE_LEN	8

long	date_to_days(int, int, int);
void	date_from_days(long, int *, int *, int *);
int	date_parse(const char *, size_t, long *);
void	date_format(long, char [DATE_LEN + 1]);
long	date_first_of_next_month(long);
long	date_today(const char *);
int	date_tz_localtime(const char *, time_t, struct tm *);
void	date_utc_now(char [64]);
long	date_mono_us(void);

#endif
