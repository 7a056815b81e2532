using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

using VptSharp.IO;
namespace VptSharp.Checkpoints;

/// <summary>
/// safetensors files with a string→string <c>__metadata__</c> block. Tensors are written and read by
/// TorchSharp.PyBridge; only the metadata entry of the JSON header is handled here.
/// </summary>
public static class SafetensorsFile
{
    public static Dictionary<string, Tensor> Load(string path)
    {
        using (var s = File.OpenRead(path)) SafetensorsHeader.Read(s, path); // checked against the file before anything is allocated
        try { return Safetensors.LoadStateDict(path); }
        catch (Exception e) when (e is not FileNotFoundException and not CheckpointException)
        { throw new CheckpointException($"{path}: not a readable safetensors file ({e.Message.Split('\n')[0]})"); }
    }

    public static Dictionary<string, Tensor> Load(Stream s) => Safetensors.LoadStateDict(s, leaveOpen: true);

    public static Dictionary<string, string> ReadMetadata(string path)
    {
        using var s = File.OpenRead(path);
        return ReadMetadata(s, path);
    }

    /// <summary>Metadata of a file that may not be safetensors at all (then empty).</summary>
    public static Dictionary<string, string> ReadMetadataOrEmpty(string path)
    {
        try { return ReadMetadata(path); } catch (Exception e) when (e is CheckpointException or JsonException) { return new(); }
    }

    public static Dictionary<string, string> ReadMetadata(Stream s, string name) => SafetensorsHeader.Read(s, name).Metadata;

    /// <summary>Saves tensors (+ metadata) atomically.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        AtomicFile.Write(path, s => Save(s, tensors, metadata));

    public static void Save(Stream output, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var dict = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
        using var ms = new MemoryStream();
        Safetensors.SaveStateDict(ms, dict, leaveOpen: true);
        foreach (var t in dict.Values) t.Dispose();
        var bytes = ms.ToArray();
        long len = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        var root = JsonNode.Parse(bytes.AsSpan(8, (int)len))!.AsObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata) meta[k] = v;
            root["__metadata__"] = meta;
        }
        var header = Encoding.UTF8.GetBytes(root.ToJsonString());
        int pad = (8 - header.Length % 8) % 8; // keep tensor data 8-byte aligned, as the format recommends
        var padded = new byte[header.Length + pad];
        header.CopyTo(padded, 0);
        for (int i = header.Length; i < padded.Length; i++) padded[i] = (byte)' ';
        Span<byte> lenOut = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(lenOut, padded.Length);
        output.Write(lenOut);
        output.Write(padded);
        output.Write(bytes, 8 + (int)len, bytes.Length - 8 - (int)len);
    }
}
