package blob

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidKey means a key (or a List prefix) is not of the form Store documents. Stores check
// every key before they touch storage, so a refused key has written and read nothing.
var ErrInvalidKey = errors.New("blob: invalid key")

// MaxKeyLen is the longest key a store accepts, in bytes.
const MaxKeyLen = 1024

// CheckKey returns nil if key is a valid object key: 1..MaxKeyLen bytes of [A-Za-z0-9._/-]
// forming path segments none of which is empty, "." or "..". Otherwise the error wraps
// ErrInvalidKey and says what is wrong.
func CheckKey(key string) error {
	if key == "" {
		return keyError(key, "is empty")
	}
	if err := checkChars(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return keyError(key, `has an empty segment (a leading, trailing or doubled "/")`)
		case ".", "..":
			return keyError(key, `has a "." or ".." segment`)
		}
	}
	return nil
}

// CheckPrefix returns nil if prefix may be passed to List: "" (everything), or a string of key
// characters whose complete segments (those followed by "/") are valid, so that a prefix can
// name a directory to list but never one outside the store. The last, partial segment may be
// anything made of key characters, because it only filters names.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := checkChars(prefix); err != nil {
		return err
	}
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if err := CheckKey(prefix[:i]); err != nil {
			return fmt.Errorf("list prefix %s: %w", QuoteKey(prefix), err)
		}
	}
	return nil
}

func checkChars(key string) error {
	if len(key) > MaxKeyLen {
		return keyError(key, "is "+strconv.Itoa(len(key))+" bytes long; the limit is "+strconv.Itoa(MaxKeyLen))
	}
	for i := 0; i < len(key); i++ {
		if !keyChar(key[i]) {
			return keyError(key, fmt.Sprintf("has %q at byte %d; keys are made of A-Z a-z 0-9 . _ - and /", key[i], i))
		}
	}
	return nil
}

func keyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/'
}

func keyError(key, why string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidKey, QuoteKey(key), why)
}

// quoteKey quotes a key for an error message, cut short: a hostile key can be megabytes long.
func QuoteKey(key string) string {
	const max = 80
	if len(key) > max {
		return strconv.Quote(key[:max]) + "…"
	}
	return strconv.Quote(key)
}
