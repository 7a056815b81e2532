using System.Collections;
using System.Security.Cryptography;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

using VptSharp.IO;
namespace VptSharp.Checkpoints;

/// <summary>Reads the raw tensors of a checkpoint file, whatever its container format.</summary>
public static class CheckpointReader
{
    public static Dictionary<string, Tensor> Read(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path}: file not found; pass an existing checkpoint, a hub id (hf:org/name) or 'default'");
        string ext = Path.GetExtension(path).ToLowerInvariant();
        return ext switch
        {
            ".safetensors" => SafetensorsFile.Load(path),
            ".npz" => Npy.ReadNpz(path),
            ".pth" or ".pt" or ".bin" or ".ckpt" or ".tar" => ReadPickle(path),
            _ => throw new CheckpointException($"{path}: unknown checkpoint extension '{ext}'; expected .safetensors, .pth/.pt/.bin or .npz"),
        };
    }

    /// <summary>A torch.save'd state dict; MAE/MoCo/DeiT-style wrappers ({"model": ...}, {"state_dict": ...}) are unwrapped.</summary>
    static Dictionary<string, Tensor> ReadPickle(string path)
    {
        Hashtable table;
        try { table = PyTorchUnpickler.UnpickleStateDict(path); }
        catch (Exception e) { throw new CheckpointException($"{path}: not a readable PyTorch checkpoint ({e.Message})"); }
        foreach (var wrapper in new[] { "model", "state_dict", "module" })
            if (table[wrapper] is Hashtable inner) { table = inner; break; }
        var o = new Dictionary<string, Tensor>();
        foreach (DictionaryEntry e in table)
            if (e.Value is Tensor t) o[(string)e.Key] = t;
        if (o.Count == 0) throw new CheckpointException($"{path}: holds no tensors; save a state_dict (torch.save(model.state_dict(), ...))");
        return o;
    }

    public static string Sha256OfFile(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
