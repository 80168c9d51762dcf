/*
 * The simulated cards' own calendar: YYYYMMDD dates and day numbers.
 * Kept apart from the daemon's date code on purpose: the simulator is the
 * daemon's test oracle, and an oracle that shared the daemon's parser
 * would agree with its bugs.
 */
#ifndef CARDLIC_SIMDATE_H
#define CARDLIC_SIMDATE_H

#define SIMDATE_LEN	8

int	simdate_parse(const char *, long *);
void	simdate_format(long, char [SIMDATE_LEN + 1]);
long	simdate_today(void);

#endif
