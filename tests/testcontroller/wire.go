package testcontroller

import (
	"fmt"
	"reflect"

	"github.com/godbus/dbus/v5"
)

// godbus decodes structs as []any, also inside variants. Encoding such a value again produces a
// different wire type than the variant's signature claims, so every value the double forwards
// (variants from systemd, variants from clients) is rebuilt with Go types derived from its D-Bus
// signature: structs become reflect.StructOf values with fields F0..Fn, arrays and dicts typed
// slices and maps.

// normalize returns v rebuilt so that godbus encodes it exactly as its signature says.
func normalize(v any) any {
	switch x := v.(type) {
	case string, bool, byte, int16, uint16, int32, uint32, int64, uint64, float64,
		dbus.ObjectPath, dbus.Signature, []string, []byte, []dbus.ObjectPath:
		return v
	case dbus.Variant:
		sig := x.Signature().String()
		nv, err := retype(sig, x.Value())
		if err != nil {
			return v
		}
		return dbus.MakeVariantWithSignature(nv.Interface(), x.Signature())
	case map[string]dbus.Variant:
		out := make(map[string]dbus.Variant, len(x))
		for k, e := range x {
			out[k] = normalize(e).(dbus.Variant)
		}
		return out
	}
	sig := dbus.SignatureOf(v).String()
	nv, err := retype(sig, v)
	if err != nil {
		return v
	}
	return nv.Interface()
}

// splitSig splits a signature into its complete types.
func splitSig(sig string) ([]string, error) {
	var out []string
	for len(sig) > 0 {
		n, err := firstType(sig)
		if err != nil {
			return nil, err
		}
		out = append(out, sig[:n])
		sig = sig[n:]
	}
	return out, nil
}

// firstType returns the length of the first complete type in sig.
func firstType(sig string) (int, error) {
	if sig == "" {
		return 0, fmt.Errorf("empty signature")
	}
	switch sig[0] {
	case 'a':
		n, err := firstType(sig[1:])
		return n + 1, err
	case '(', '{':
		closer := byte(')')
		if sig[0] == '{' {
			closer = '}'
		}
		i := 1
		for i < len(sig) && sig[i] != closer {
			n, err := firstType(sig[i:])
			if err != nil {
				return 0, err
			}
			i += n
		}
		if i >= len(sig) {
			return 0, fmt.Errorf("unterminated %q", sig)
		}
		return i + 1, nil
	default:
		return 1, nil
	}
}

var variantType = reflect.TypeOf(dbus.Variant{})

// goType is the Go type used to encode a value of signature sig.
func goType(sig string) (reflect.Type, error) {
	switch sig[0] {
	case 'y':
		return reflect.TypeOf(byte(0)), nil
	case 'b':
		return reflect.TypeOf(false), nil
	case 'n':
		return reflect.TypeOf(int16(0)), nil
	case 'q':
		return reflect.TypeOf(uint16(0)), nil
	case 'i':
		return reflect.TypeOf(int32(0)), nil
	case 'u':
		return reflect.TypeOf(uint32(0)), nil
	case 'x':
		return reflect.TypeOf(int64(0)), nil
	case 't':
		return reflect.TypeOf(uint64(0)), nil
	case 'd':
		return reflect.TypeOf(float64(0)), nil
	case 's':
		return reflect.TypeOf(""), nil
	case 'o':
		return reflect.TypeOf(dbus.ObjectPath("")), nil
	case 'g':
		return reflect.TypeOf(dbus.Signature{}), nil
	case 'h':
		return reflect.TypeOf(dbus.UnixFDIndex(0)), nil
	case 'v':
		return variantType, nil
	case 'a':
		if len(sig) > 1 && sig[1] == '{' {
			parts, err := splitSig(sig[2 : len(sig)-1])
			if err != nil || len(parts) != 2 {
				return nil, fmt.Errorf("bad dict signature %q", sig)
			}
			kt, err := goType(parts[0])
			if err != nil {
				return nil, err
			}
			vt, err := goType(parts[1])
			if err != nil {
				return nil, err
			}
			return reflect.MapOf(kt, vt), nil
		}
		et, err := goType(sig[1:])
		if err != nil {
			return nil, err
		}
		return reflect.SliceOf(et), nil
	case '(':
		parts, err := splitSig(sig[1 : len(sig)-1])
		if err != nil {
			return nil, err
		}
		fields := make([]reflect.StructField, len(parts))
		for i, p := range parts {
			t, err := goType(p)
			if err != nil {
				return nil, err
			}
			fields[i] = reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: t}
		}
		return reflect.StructOf(fields), nil
	}
	return nil, fmt.Errorf("unsupported signature %q", sig)
}

// retype converts a decoded value v into a value of goType(sig).
func retype(sig string, v any) (reflect.Value, error) {
	t, err := goType(sig)
	if err != nil {
		return reflect.Value{}, err
	}
	rv := reflect.ValueOf(v)
	switch sig[0] {
	case 'v':
		vv, ok := v.(dbus.Variant)
		if !ok {
			return reflect.Value{}, fmt.Errorf("want variant, got %T", v)
		}
		return reflect.ValueOf(normalize(vv)), nil
	case 'a':
		if rv.Kind() == reflect.Map {
			parts, _ := splitSig(sig[2 : len(sig)-1])
			out := reflect.MakeMapWithSize(t, rv.Len())
			iter := rv.MapRange()
			for iter.Next() {
				k, err := retype(parts[0], iter.Key().Interface())
				if err != nil {
					return reflect.Value{}, err
				}
				e, err := retype(parts[1], iter.Value().Interface())
				if err != nil {
					return reflect.Value{}, err
				}
				out.SetMapIndex(k, e)
			}
			return out, nil
		}
		if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
			return reflect.Value{}, fmt.Errorf("want array for %q, got %T", sig, v)
		}
		out := reflect.MakeSlice(t, rv.Len(), rv.Len())
		for i := 0; i < rv.Len(); i++ {
			e, err := retype(sig[1:], rv.Index(i).Interface())
			if err != nil {
				return reflect.Value{}, err
			}
			out.Index(i).Set(e)
		}
		return out, nil
	case '(':
		parts, _ := splitSig(sig[1 : len(sig)-1])
		out := reflect.New(t).Elem()
		switch rv.Kind() {
		case reflect.Slice:
			if rv.Len() != len(parts) {
				return reflect.Value{}, fmt.Errorf("struct %q: %d fields, got %d", sig, len(parts), rv.Len())
			}
			for i, p := range parts {
				e, err := retype(p, rv.Index(i).Interface())
				if err != nil {
					return reflect.Value{}, err
				}
				out.Field(i).Set(e)
			}
		case reflect.Struct:
			n := 0
			for i := 0; i < rv.NumField() && n < len(parts); i++ {
				if !rv.Type().Field(i).IsExported() {
					continue
				}
				e, err := retype(parts[n], rv.Field(i).Interface())
				if err != nil {
					return reflect.Value{}, err
				}
				out.Field(n).Set(e)
				n++
			}
		default:
			return reflect.Value{}, fmt.Errorf("want struct for %q, got %T", sig, v)
		}
		return out, nil
	}
	if !rv.IsValid() {
		return reflect.Value{}, fmt.Errorf("nil value for %q", sig)
	}
	if rv.Type().ConvertibleTo(t) && rv.Kind() == t.Kind() {
		return rv.Convert(t), nil
	}
	return reflect.Value{}, fmt.Errorf("want %s for %q, got %T", t, sig, v)
}
