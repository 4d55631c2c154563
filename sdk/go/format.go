package payrail

// Format is one wire format: how a gateway's requests and results look as bytes.
// Encoders validate the message first (a *FormatError names the field); decoders
// refuse anything over EncodedMaxBytes (BatchEncodedMaxBytes for a batch),
// unparseable, or with a missing or ill-typed field, with a *FormatError.
type Format interface {
	// Name is the registry name: "json", "soap" or "protobuf".
	Name() string
	// ContentType is the media type of the format's results.
	ContentType() string
	EncodeRequest(r *Request) ([]byte, error)
	DecodeRequest(data []byte) (*Request, error)
	EncodeResult(r *Result) ([]byte, error)
	DecodeResult(data []byte) (*Result, error)
	// EncodeResults encodes a batch of 1 to BatchResultsMax results, in order;
	// ReasonOversized when it would exceed BatchEncodedMaxBytes (send fewer).
	EncodeResults(results []Result) ([]byte, error)
	// DecodeResults decodes a batch; every result is checked like one alone.
	DecodeResults(data []byte) ([]Result, error)
}

// The formats, by registry name.
var (
	JSON     Format = jsonFormat{}
	SOAP     Format = soapFormat{}
	Protobuf Format = protobufFormat{}
)

// FormatByName returns the format a gateway is registered with; a *FormatError with
// ReasonUnknownFormat for any other name.
func FormatByName(name string) (Format, error) {
	switch name {
	case "json":
		return JSON, nil
	case "soap":
		return SOAP, nil
	case "protobuf":
		return Protobuf, nil
	}
	return nil, formatErr(ReasonUnknownFormat, "")
}

func checkSize(data []byte, maxBytes int) error {
	if len(data) > maxBytes {
		return formatErr(ReasonOversized, "")
	}
	return nil
}
