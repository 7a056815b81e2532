using System.Runtime.InteropServices;
using Google.Protobuf;
using static TorchSharp.torch;

namespace VptSharp.Checkpoints;

/// <summary>
/// The parts of an ONNX model (onnx.proto: ModelProto.graph → nodes and float initializers) needed to take weights out
/// of an exported network, read with Google.Protobuf's wire reader (no generated classes). Only float32 initializers
/// (raw_data or float_data) and int / ints / float attributes are kept; everything else is skipped.
/// </summary>
public sealed class OnnxGraph
{
    public sealed record Node(string OpType, string Name, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs,
        IReadOnlyDictionary<string, long[]> Ints, IReadOnlyDictionary<string, float> Floats);

    public List<Node> Nodes { get; } = [];
    /// <summary>Float initializers by name, as [dims] float32 tensors.</summary>
    public Dictionary<string, Tensor> Initializers { get; } = [];
    /// <summary>The file read, which every refusal names.</summary>
    readonly string path;

    OnnxGraph(string path) => this.path = path;

    public static OnnxGraph Read(string path)
    {
        var g = new OnnxGraph(path);
        try
        {
            var model = new CodedInputStream(File.ReadAllBytes(path));
            for (uint tag; (tag = model.ReadTag()) != 0;)
            {
                if (WireFormat.GetTagFieldNumber(tag) == 7) g.ReadGraph(model.ReadBytes()); // ModelProto.graph
                else model.SkipLastField();
            }
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new CheckpointException($"{path}: not a readable ONNX model ({e.Message})");
        }
        if (g.Nodes.Count == 0) throw new CheckpointException($"{path}: ONNX model has no graph nodes");
        return g;
    }

    void ReadGraph(ByteString bytes)
    {
        var s = bytes.CreateCodedInput();
        for (uint tag; (tag = s.ReadTag()) != 0;)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: Nodes.Add(ReadNode(s.ReadBytes())); break;
                case 5: ReadTensor(s.ReadBytes()); break;
                default: s.SkipLastField(); break;
            }
        }
    }

    static Node ReadNode(ByteString bytes)
    {
        var s = bytes.CreateCodedInput();
        List<string> inputs = [], outputs = [];
        string op = "", name = "";
        var ints = new Dictionary<string, long[]>();
        var floats = new Dictionary<string, float>();
        for (uint tag; (tag = s.ReadTag()) != 0;)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: inputs.Add(s.ReadString()); break;
                case 2: outputs.Add(s.ReadString()); break;
                case 3: name = s.ReadString(); break;
                case 4: op = s.ReadString(); break;
                case 5: ReadAttribute(s.ReadBytes(), ints, floats); break;
                default: s.SkipLastField(); break;
            }
        }
        return new Node(op, name, inputs, outputs, ints, floats);
    }

    static void ReadAttribute(ByteString bytes, Dictionary<string, long[]> ints, Dictionary<string, float> floats)
    {
        var s = bytes.CreateCodedInput();
        string name = "";
        var values = new List<long>();
        float? f = null;
        for (uint tag; (tag = s.ReadTag()) != 0;)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: name = s.ReadString(); break;
                case 2: f = s.ReadFloat(); break;
                case 3: values.Add(s.ReadInt64()); break;
                case 8 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    var packed = s.ReadBytes().CreateCodedInput();
                    while (!packed.IsAtEnd) values.Add(packed.ReadInt64());
                    break;
                case 8: values.Add(s.ReadInt64()); break;
                default: s.SkipLastField(); break;
            }
        }
        if (values.Count > 0) ints[name] = [.. values];
        if (f is float v) floats[name] = v;
    }

    void ReadTensor(ByteString bytes)
    {
        var s = bytes.CreateCodedInput();
        var dims = new List<long>();
        int dataType = 0;
        string name = "";
        float[]? data = null;
        var floatList = new List<float>();
        for (uint tag; (tag = s.ReadTag()) != 0;)
        {
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    var pd = s.ReadBytes().CreateCodedInput();
                    while (!pd.IsAtEnd) dims.Add(pd.ReadInt64());
                    break;
                case 1: dims.Add(s.ReadInt64()); break;
                case 2: dataType = s.ReadInt32(); break;
                case 4 when WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited:
                    floatList.AddRange(MemoryMarshal.Cast<byte, float>(s.ReadBytes().Span).ToArray()); // little-endian, as onnx stores it
                    break;
                case 4: floatList.Add(s.ReadFloat()); break;
                case 8: name = s.ReadString(); break;
                case 9:
                    var raw = s.ReadBytes();
                    if (raw.Length % 4 != 0) throw new CheckpointException($"{path}: ONNX initializer '{name}' holds {raw.Length} raw bytes, not whole float32 values");
                    data = MemoryMarshal.Cast<byte, float>(raw.Span).ToArray();
                    break;
                default: s.SkipLastField(); break;
            }
        }
        if (dataType != 1) return; // FLOAT only: the weights; int64 shape constants etc. are not needed
        data ??= [.. floatList];
        long n = 1;
        try { foreach (long d in dims) n = d < 0 ? throw new OverflowException() : checked(n * d); }
        catch (OverflowException) { n = -1; } // a negative or overflowing shape matches no value count
        if (data.Length != n) throw new CheckpointException($"{path}: ONNX initializer '{name}' has {data.Length} values for shape [{string.Join(",", dims)}]");
        Initializers[name] = tensor(data).reshape([.. dims]);
    }
}
