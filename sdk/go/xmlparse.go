package payrail

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// xmlElement is a parsed element: its namespace-resolved name, attributes, element
// children and the text directly inside it (comments dropped, as ElementTree does).
type xmlElement struct {
	name     xml.Name
	attrs    []xml.Attr
	children []*xmlElement
	text     strings.Builder
}

func (e *xmlElement) attr(space, local string) (string, bool) {
	for _, a := range e.attrs {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

var errForbidden = errors.New("forbidden markup")

// parseXML builds the element tree of one UTF-8 document, refusing DTDs and processing
// instructions. Namespace prefixes are resolved here (RawToken): encoding/xml's Token
// leaves an unbound prefix in place, where payrail's parser refuses the document.
func parseXML(data []byte) (*xmlElement, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf8") {
			return input, nil
		}
		return nil, errors.New("encoding") // only UTF-8 documents are accepted
	}
	type frame struct {
		el     *xmlElement
		raw    xml.Name
		scopes map[string]string
	}
	var stack []frame
	var root *xmlElement
	first := true
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		isFirst := first
		first = false
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return nil, errForbidden
			}
			if !isFirst {
				return nil, errors.New("declaration not at start")
			}
		case xml.Directive:
			// <!DOCTYPE ...> (with any ENTITY declarations inside it), or another <!...>.
			return nil, errForbidden
		case xml.Comment:
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimLeft(t, " \t\r\n")) != 0 {
					return nil, errors.New("text outside the root")
				}
				continue
			}
			stack[len(stack)-1].el.text.Write(t)
		case xml.StartElement:
			if root != nil && len(stack) == 0 || len(stack) >= xmlDepthMax {
				return nil, errors.New("structure")
			}
			scopes := map[string]string{}
			if len(stack) > 0 {
				scopes = stack[len(stack)-1].scopes
			}
			seen := map[xml.Name]bool{}
			declared := false
			for _, a := range t.Attr {
				if seen[a.Name] {
					return nil, errors.New("duplicate attribute")
				}
				seen[a.Name] = true
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					if !declared {
						copied := make(map[string]string, len(scopes)+1)
						for k, v := range scopes {
							copied[k] = v
						}
						scopes, declared = copied, true
					}
					if a.Name.Space == "xmlns" {
						if a.Value == "" {
							return nil, errors.New("empty prefix binding")
						}
						scopes[a.Name.Local] = a.Value
					} else {
						scopes[""] = a.Value
					}
				}
			}
			el := &xmlElement{}
			var ok bool
			if el.name, ok = resolve(t.Name, scopes, true); !ok {
				return nil, errors.New("unbound prefix")
			}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				name, ok := resolve(a.Name, scopes, false)
				if !ok {
					return nil, errors.New("unbound prefix")
				}
				el.attrs = append(el.attrs, xml.Attr{Name: name, Value: a.Value})
			}
			if len(stack) == 0 {
				root = el
			} else {
				parent := stack[len(stack)-1].el
				parent.children = append(parent.children, el)
			}
			stack = append(stack, frame{el: el, raw: t.Name, scopes: scopes})
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].raw != t.Name {
				return nil, errors.New("mismatched end")
			}
			stack = stack[:len(stack)-1]
		}
	}
	if root == nil || len(stack) != 0 {
		return nil, errors.New("incomplete")
	}
	return root, nil
}

// resolve maps a prefix to its namespace; elements take the default namespace,
// attributes without a prefix have none. "xml" is bound by definition.
func resolve(n xml.Name, scopes map[string]string, element bool) (xml.Name, bool) {
	switch {
	case n.Space == "xml":
		return xml.Name{Space: "http://www.w3.org/XML/1998/namespace", Local: n.Local}, true
	case n.Space != "":
		ns, ok := scopes[n.Space]
		return xml.Name{Space: ns, Local: n.Local}, ok
	case element:
		return xml.Name{Space: scopes[""], Local: n.Local}, true
	}
	return n, true
}
