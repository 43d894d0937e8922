package cms

import "time"

const (
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
)

// decodeTime parses a signingTime value with the kernel's rules
// (x509_decode_time in crypto/asymmetric_keys/x509_cert_parser.c):
// UTCTime is exactly YYMMDDHHMMSSZ (YY < 50 means 20YY), GeneralizedTime
// exactly YYYYMMDDHHMMSSZ and must not be used for 1950..2049; years before
// 1970 are refused; hour 24 and second 60 are accepted and roll over.
func decodeTime(tag byte, v []byte) (time.Time, bool) {
	var year int
	p := v
	two := func() (int, bool) {
		if len(p) < 2 || p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' {
			return 0, false
		}
		n := int(p[0]-'0')*10 + int(p[1]-'0')
		p = p[2:]
		return n, true
	}
	switch tag {
	case tagUTCTime:
		if len(v) != 13 {
			return time.Time{}, false
		}
		yy, ok := two()
		if !ok {
			return time.Time{}, false
		}
		year = 2000 + yy
		if yy >= 50 {
			year = 1900 + yy
		}
	case tagGeneralizedTime:
		if len(v) != 15 {
			return time.Time{}, false
		}
		hi, ok1 := two()
		lo, ok2 := two()
		if !ok1 || !ok2 {
			return time.Time{}, false
		}
		year = hi*100 + lo
		if year >= 1950 && year <= 2049 {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	var f [5]int // month, day, hour, minute, second
	for i := range f {
		n, ok := two()
		if !ok {
			return time.Time{}, false
		}
		f[i] = n
	}
	if p[0] != 'Z' {
		return time.Time{}, false
	}
	mon, day, hour, mins, sec := f[0], f[1], f[2], f[3], f[4]
	if year < 1970 || mon < 1 || mon > 12 {
		return time.Time{}, false
	}
	if day < 1 || day > daysIn(year, mon) || hour > 24 || mins > 59 || sec > 60 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(mon), day, hour, mins, sec, 0, time.UTC), true
}

func daysIn(year, mon int) int {
	switch mon {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
