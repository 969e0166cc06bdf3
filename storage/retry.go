package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how patiently transient errors (see
// IsTransient) are retried. The zero value is the default policy.
type RetryPolicy struct {
	// Attempts is the total number of attempts, the first included.
	// 0 or less means 5; 1 disables retries.
	Attempts int
	// Base is the backoff ceiling before the second attempt; it doubles per
	// attempt up to Max. 0 or less means 100ms and 5s respectively.
	Base, Max time.Duration
	// Jitter picks the actual delay from [0, ceiling] ("full jitter").
	// nil means uniformly at random. Tests inject a deterministic one.
	Jitter func(ceiling time.Duration) time.Duration
	// Sleep waits d or until ctx is done, returning ctx's error in that case.
	// nil means a timer. Tests inject one that records and returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Base <= 0 {
		p.Base = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 5 * time.Second
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	if p.Jitter == nil {
		p.Jitter = func(c time.Duration) time.Duration {
			if c <= 0 {
				return 0
			}
			return rand.N(c + 1)
		}
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	return p
}

// ceiling is the backoff ceiling after the given number of failed attempts
// (1 for the delay before the second attempt).
func (p RetryPolicy) ceiling(failed int) time.Duration {
	d := p.Base
	for i := 1; i < failed && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

func abandoned(err, cerr error) error {
	if errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (retry abandoned: %w)", err, cerr)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do runs fn until it succeeds, fails with an error that is not transient,
// runs out of attempts, or ctx is done. Each attempt gets its own context
// bounded by OpTimeout; attempt counts from 1. It returns fn's last error;
// if ctx ended first, ctx's error is wrapped in as well, so errors.Is(err,
// context.Canceled) holds.
func (b *Bucket) do(ctx context.Context, op, key string, fn func(ctx context.Context, attempt int) error) error {
	p := b.retry
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.opTimeout)
		err = fn(actx, attempt)
		cancel()
		if cerr := ctx.Err(); err != nil && cerr != nil {
			return abandoned(err, cerr)
		}
		if err == nil || !IsTransient(err) || attempt >= p.Attempts {
			return err
		}
		d := p.Jitter(p.ceiling(attempt))
		b.log.LogAttrs(ctx, slog.LevelWarn, "storage: retrying",
			slog.String("op", op), slog.String("key", key),
			slog.Int("attempt", attempt), slog.Duration("delay", d),
			slog.String("error", err.Error()))
		if serr := p.Sleep(ctx, d); serr != nil {
			return abandoned(err, serr)
		}
	}
}
