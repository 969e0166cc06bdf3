package storage

import (
	"net/url"
	"strconv"
	"strings"
)

// redacted replaces secrets in URLs and error messages.
const redacted = "REDACTED"

// secretParamWords mark a query parameter as secret when its lower-cased
// name contains one of them (so "X-Amz-Signature", "sas_token" and
// "access_key_id" all match; "kmskeyid" too, which costs nothing).
var secretParamWords = []string{
	"key", "secret", "token", "sig", "credential", "password", "passwd",
	"pwd", "auth", "session",
}

func isSecretParam(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretParamWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// Redact returns rawURL with the userinfo password and the values of
// secret-looking query parameters (names containing key, secret, token, sig,
// credential, password, auth, session...) replaced by "REDACTED". A query
// value that is itself a URL (such as endpoint=) has its password redacted
// too. Parameter order and everything else are kept. A string that does not
// parse as a URL is replaced by "REDACTED" whole, since nothing in it can be
// told apart.
func Redact(rawURL string) string {
	out, _ := redact(rawURL)
	return out
}

// redact returns the redacted URL and the secrets it removed, so that error
// messages quoting the URL can be scrubbed as well.
func redact(rawURL string) (string, []string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return redacted, []string{rawURL}
	}
	var secrets []string
	if pw, ok := u.User.Password(); ok {
		secrets = append(secrets, pw)
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, part := range parts {
			rawName, rawValue, hasValue := strings.Cut(part, "=")
			if !hasValue || rawValue == "" {
				continue
			}
			name, err := url.QueryUnescape(rawName)
			if err != nil {
				name = rawName
			}
			value, err := url.QueryUnescape(rawValue)
			if err != nil {
				value = rawValue
			}
			switch {
			case isSecretParam(name):
				secrets = append(secrets, value, rawValue)
				parts[i] = rawName + "=" + redacted
			case strings.Contains(value, "@"):
				inner, innerSecrets := redact(value)
				if len(innerSecrets) > 0 {
					secrets = append(secrets, innerSecrets...)
					secrets = append(secrets, rawValue)
					parts[i] = rawName + "=" + url.QueryEscape(inner)
				}
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if len(secrets) == 0 {
		return rawURL, nil // as given: u.String() would turn "mem://" into "mem:"
	}
	return u.String(), secrets
}

// scrub removes every occurrence of the secrets from msg, in the forms an
// error message may quote them: as is, %q-escaped, and URL-escaped.
func scrub(msg string, secrets []string) string {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		quoted := strconv.Quote(s)
		for _, form := range []string{s, quoted[1 : len(quoted)-1], url.QueryEscape(s), url.PathEscape(s), url.UserPassword("", s).String()[1:]} {
			if form != "" && form != ":" {
				msg = strings.ReplaceAll(msg, form, redacted)
			}
		}
	}
	return msg
}

// openError is Open's error: its message is scrubbed of the URL's secrets,
// while Unwrap still gives the driver's error for errors.Is/As and
// gcerrors.Code. The unwrapped error's own message may hold secrets; log
// this error, not what it wraps.
type openError struct {
	msg string
	err error
}

func (e *openError) Error() string { return e.msg }
func (e *openError) Unwrap() error { return e.err }
