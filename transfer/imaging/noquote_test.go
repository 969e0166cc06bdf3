package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestUnknownFormatQuotesNoContent: the error for bytes that are no image says how many bytes
// were looked at and what for, and quotes none of them (a symlink to a secret file put its
// first bytes in the summary and the contact sheet).
func TestUnknownFormatQuotesNoContent(t *testing.T) {
	for _, secret := range []string{"AKIAIOSFODNN7EXAMPLE", "root:x:0:0:root:/root", "QZ"} {
		_, _, err := Decode(bytes.NewReader([]byte(secret)), Limits{})
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("%q: %v, want ErrUnsupported", secret, err)
		}
		msg := err.Error()
		for _, form := range []string{secret[:2], fmt.Sprintf("%q", secret[:2])[1:3]} {
			if strings.Contains(msg, form) {
				t.Errorf("%q: error %q quotes the content", secret, msg)
			}
		}
		if want := fmt.Sprintf("the first %d bytes match no JPEG, PNG", min(len(secret), 16)); !strings.Contains(msg, want) {
			t.Errorf("%q: error %q, want it to say %q", secret, msg, want)
		}
	}
}
